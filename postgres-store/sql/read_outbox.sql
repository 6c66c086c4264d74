-- A page of the outbox after the checkpoint ($1, $2), under the same horizon
-- as the global stream (see read_all.sql).
--
-- The limit $3 is a sub-select so that the planner does not know it: told
-- the limit, it compares it with its estimate of the matching rows, which
-- for an outbox filled since the last ANALYZE is far too low, and sorts
-- every row after the checkpoint (a bitmap scan and an external sort: 235 ms
-- for a page of 10,000 out of 200,000 rows) instead of reading the first
-- rows of the (tx_id, position) index (10 ms).
SELECT tx_id, position, recorded_at, message_id, topic, key, event_type, event_version, payload,
       stream_id, stream_version, metadata
  FROM {schema}.outbox
 WHERE (tx_id, position) > ($1, $2)
   AND tx_id < pg_snapshot_xmin(pg_current_snapshot())
 ORDER BY tx_id, position
 LIMIT (SELECT $3::bigint)
