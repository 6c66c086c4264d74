-- A page of the outbox after the checkpoint ($1, $2), under the same horizon
-- as the global stream (see read_all.sql).
SELECT tx_id, position, recorded_at, message_id, topic, key, event_type, event_version, payload,
       stream_id, stream_version, metadata
  FROM {schema}.outbox
 WHERE (tx_id, position) > ($1, $2)
   AND tx_id < pg_snapshot_xmin(pg_current_snapshot())
 ORDER BY tx_id, position
 LIMIT $3
