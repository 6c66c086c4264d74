-- As held_back_outbox.sql, for one shard (the shard_index line, see
-- read_shard.sql).
SELECT max(tx_id)
  FROM {schema}.outbox
 WHERE tx_id >= pg_snapshot_xmin(pg_current_snapshot())
   {shard_index}
