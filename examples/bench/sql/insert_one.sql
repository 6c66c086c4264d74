-- The raw limit of single-event appends: one row, one transaction.
INSERT INTO {schema}.events (stream_id, stream_version, event_id, event_type, event_version,
                             payload, correlation_id, causation_id, command_id, metadata)
VALUES ($1, $2, $3, $4, $5, ($6::text)::jsonb, $7, $8, $9, NULL)
