-- The raw limit of loading an aggregate: the same rows and columns as the
-- store reads.
SELECT stream_version, tx_id, position, event_id, event_type, event_version, payload::text,
       correlation_id, causation_id, command_id, metadata::text, recorded_at
  FROM {schema}.events
 WHERE stream_id = $1 AND stream_version >= $2
 ORDER BY stream_version
