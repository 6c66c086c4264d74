-- Parks event $3 for projection $1 at version $2; parking it again keeps the
-- newest error.
INSERT INTO {schema}.projection_parked AS parked
       (name, version, event_id, stream_id, stream_version, tx_id, position, event_type,
        event_version, payload, correlation_id, causation_id, command_id, metadata,
        recorded_at, error, attempts, parked_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)
ON CONFLICT (name, version, event_id) DO UPDATE
   SET error = excluded.error,
       attempts = excluded.attempts,
       parked_at = excluded.parked_at
