-- The newest snapshot of one stream.
SELECT stream_version, state_version, state, taken_at
  FROM {schema}.snapshots
 WHERE stream_id = $1
