-- How many rows of the outbox, or of one shard of it (`sharded`, see
-- read_shard.sql), wait after ($1, $2), and when the oldest of them was
-- written. Rows hidden by the horizon count: they are written, only not yet
-- readable.
SELECT count(*), min(recorded_at)
  FROM {schema}.outbox
 WHERE (tx_id, position) > ($1, $2)
-- if sharded
   AND (key_hash::bigint & 4294967295) % {shard_count} = {shard_index}
-- end if
