-- As held_back_outbox.sql, for one shard: $1 the shard count, $2 its index.
SELECT max(tx_id)
  FROM {schema}.outbox
 WHERE tx_id >= pg_snapshot_xmin(pg_current_snapshot())
   AND (key_hash::bigint & 4294967295) % $1::bigint = $2::bigint
