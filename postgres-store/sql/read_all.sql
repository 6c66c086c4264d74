-- A page of the global stream after the checkpoint ($1, $2). Only rows of
-- transactions below the oldest one still running are returned: every
-- transaction below that horizon has finished, so no row can appear behind
-- the checkpoint later.
--
-- The limit $3 is a sub-select so that the planner does not know it: told
-- a large one, it compares it with its estimate of the matching rows, which
-- for events written since the last ANALYZE is far too low, and sorts every
-- row after the checkpoint (a bitmap scan and a sort: 41 ms for a page of
-- 10,000 out of 200,000 unanalysed rows) instead of reading the first rows
-- of the (tx_id, position) index (1 ms).
SELECT stream_id, stream_version, tx_id, position, event_id, event_type, event_version, payload,
       correlation_id, causation_id, command_id, metadata, recorded_at
  FROM {schema}.events
 WHERE (tx_id, position) > ($1, $2)
   AND tx_id < pg_snapshot_xmin(pg_current_snapshot())
 ORDER BY tx_id, position
 LIMIT (SELECT $3::bigint)
