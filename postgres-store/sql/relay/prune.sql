-- Deletes up to $3 rows of the outbox, or of one shard of it (`sharded`,
-- see read_shard.sql), at or before ($1, $2), oldest first.
--
-- The rows are found in the (tx_id, position) index, or the shard's own,
-- and deleted by their ctid: a join back on position (position IN (...))
-- made the planner collect every row behind the checkpoint, sort them and
-- probe the primary key once per row (135 ms per 5,000 rows, against 6 ms
-- so). A ctid is stable within the statement: outbox rows are never
-- updated, and a row another pruner deleted meanwhile is skipped. The
-- limit is a sub-select for the reason given in read_shard.sql.
DELETE FROM {schema}.outbox
 WHERE ctid = ANY (ARRAY(
           SELECT ctid
             FROM {schema}.outbox
            WHERE (tx_id, position) <= ($1, $2)
-- if sharded
              AND (key_hash::bigint & 4294967295) % {shard_count} = {shard_index}
-- end if
            ORDER BY tx_id, position
            LIMIT (SELECT $3::bigint)))
