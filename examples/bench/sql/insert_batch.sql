-- The raw limit of batched appends: the rows of one append in one
-- multi-row statement, one transaction.
INSERT INTO {schema}.events (stream_id, stream_version, event_id, event_type, event_version,
                             payload, correlation_id, causation_id, command_id, metadata)
SELECT $1, e.stream_version, e.event_id, e.event_type, e.event_version, e.payload::jsonb,
       e.correlation_id, e.causation_id, e.command_id, NULL
  FROM unnest($2::bigint[], $3::uuid[], $4::text[], $5::integer[], $6::text[], $7::uuid[],
              $8::uuid[], $9::uuid[])
       AS e(stream_version, event_id, event_type, event_version, payload, correlation_id,
            causation_id, command_id)
