-- How many rows of the shard ($3 count, $4 index) wait after ($1, $2), and
-- when the oldest of them was written. Rows hidden by the horizon count:
-- they are written, only not yet readable.
SELECT count(*), min(recorded_at)
  FROM {schema}.outbox
 WHERE (tx_id, position) > ($1, $2)
   AND (key_hash::bigint & 4294967295) % $3::bigint = $4::bigint
