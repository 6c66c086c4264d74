-- The raw limit of single-event appends: one row, one transaction. The row
-- is the one a command's append writes, the claim of its command id
-- included (append_command_id, append_event_count 1).
INSERT INTO {schema}.events (stream_id, stream_version, event_id, event_type, event_version,
                             payload, correlation_id, causation_id, command_id, metadata,
                             append_command_id, append_event_count)
VALUES ($1, $2, $3, $4, $5, ($6::text)::jsonb, $7, $8, $9, NULL, $9, 1)
