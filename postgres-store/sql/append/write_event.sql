-- One event, without snapshot or outbox messages. $5 event id, $6 type,
-- $7 type version, $8 payload, $9 correlation id, $10 causation id,
-- $11 command id of the metadata, $12 the rest of the metadata (or NULL).
-- The event claims the append's command id ($4), when there is one.
--
-- A bare INSERT, followed by one of two RETURNING clauses: where nothing
-- follows it (a lone append without NOTIFY), it is the statement itself,
-- answering with event_written.sql; otherwise it is wrapped as the CTE
-- `answer`, answering with event_answer.sql.
INSERT INTO {schema}.events (stream_id, stream_version, event_id, event_type, event_version,
                             payload, correlation_id, causation_id, command_id, metadata,
                             append_command_id, append_event_count)
SELECT $1::text, s.version, $5::uuid, $6::text, $7::integer, $8::jsonb, $9::uuid, $10::uuid,
       $11::uuid, $12::jsonb, $4::uuid, CASE WHEN $4::uuid IS NOT NULL THEN 1 END
  FROM stream s
