-- The events parked for projection $1 at version $2, in the global order.
-- The columns from stream_version to recorded_at are those of a stored event
-- (see read_all.sql).
SELECT stream_id, stream_version, tx_id, position, event_id, event_type, event_version, payload,
       correlation_id, causation_id, command_id, metadata, recorded_at,
       error, attempts, parked_at
  FROM {schema}.projection_parked
 WHERE name = $1 AND version = $2
 ORDER BY tx_id, position
