-- The raw limit of loading an aggregate from a snapshot: its row.
SELECT stream_version, state_version, state::text
  FROM {schema}.snapshots
 WHERE stream_id = $1
