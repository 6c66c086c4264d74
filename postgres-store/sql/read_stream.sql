-- The events of one stream from a version on, in version order.
SELECT stream_version, tx_id, position, event_id, event_type, event_version, payload,
       correlation_id, causation_id, command_id, metadata, recorded_at
  FROM {schema}.events
 WHERE stream_id = $1 AND stream_version >= $2
 ORDER BY stream_version
