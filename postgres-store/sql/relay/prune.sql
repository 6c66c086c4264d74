-- Deletes up to $3 rows of the shard ($4 count, $5 index) at or before
-- ($1, $2), oldest first.
--
-- The rows are found in the (tx_id, position) index and deleted by their
-- ctid: a join back on position (position IN (...)) made the planner
-- collect every row behind the checkpoint, sort them and probe the primary
-- key once per row (135 ms per 5,000 rows, against 6 ms so). A ctid is
-- stable within the statement: outbox rows are never updated, and a row
-- another pruner deleted meanwhile is skipped. The limit is a sub-select
-- for the reason given in read_outbox.sql. With one shard ($4 = 1) the
-- CASE skips the hash arithmetic, which keeps every row anyway.
DELETE FROM {schema}.outbox
 WHERE ctid = ANY (ARRAY(
           SELECT ctid
             FROM {schema}.outbox
            WHERE (tx_id, position) <= ($1, $2)
              AND CASE WHEN $4::bigint = 1 THEN true
                       ELSE (key_hash::bigint & 4294967295) % $4::bigint = $5::bigint
                   END
            ORDER BY tx_id, position
            LIMIT (SELECT $3::bigint)))
