-- A page of the global stream after the checkpoint ($1, $2). Only rows of
-- transactions below the oldest one still running are returned: every
-- transaction below that horizon has finished, so no row can appear behind
-- the checkpoint later.
SELECT stream_id, stream_version, tx_id, position, event_id, event_type, event_version, payload,
       correlation_id, causation_id, command_id, metadata, recorded_at
  FROM {schema}.events
 WHERE (tx_id, position) > ($1, $2)
   AND tx_id < pg_snapshot_xmin(pg_current_snapshot())
 ORDER BY tx_id, position
 LIMIT $3
