-- As held_back_events.sql, for the outbox or one shard of it (`sharded`,
-- see read_shard.sql).
SELECT max(tx_id)
  FROM {schema}.outbox
 WHERE tx_id >= pg_snapshot_xmin(pg_current_snapshot())
-- if sharded
   AND (key_hash::bigint & 4294967295) % {shard_count} = {shard_index}
-- end if
