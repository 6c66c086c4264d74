-- A page of the global stream after ($1, $2): the statement, rows and
-- columns the projection runner reads (postgres-store/sql/read_all.sql).
SELECT stream_id, stream_version, tx_id, position, event_id, event_type, event_version, payload,
       correlation_id, causation_id, command_id, metadata, recorded_at
  FROM {schema}.events
 WHERE (tx_id, position) > ($1, $2)
   AND tx_id < pg_snapshot_xmin(pg_current_snapshot())
 ORDER BY tx_id, position
 LIMIT $3
