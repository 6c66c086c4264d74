-- Any number of events, an optional snapshot and outbox messages. $5 to $12
-- are the event columns of write_event.sql as arrays, $13 the snapshot's
-- state version and $14 its state (or NULL), $15 to $23 the outbox
-- message columns as arrays and $24 their keys' shard hashes. The last
-- event claims the append's command id ($4), when there is one; the answer
-- comes from its row.
written AS (
    INSERT INTO {schema}.events (stream_id, stream_version, event_id, event_type, event_version,
                                 payload, correlation_id, causation_id, command_id, metadata,
                                 append_command_id, append_event_count)
    SELECT $1::text, s.version - $3::bigint + e.ordinality, e.event_id, e.event_type,
           e.event_version, e.payload, e.correlation_id, e.causation_id, e.command_id, e.metadata,
           CASE WHEN e.ordinality = $3::bigint THEN $4::uuid END,
           CASE WHEN e.ordinality = $3::bigint AND $4::uuid IS NOT NULL THEN ($3::bigint)::integer END
      FROM stream s,
           unnest($5::uuid[], $6::text[], $7::integer[], $8::jsonb[], $9::uuid[], $10::uuid[],
                  $11::uuid[], $12::jsonb[])
           WITH ORDINALITY AS e(event_id, event_type, event_version, payload, correlation_id,
                                causation_id, command_id, metadata, ordinality)
     ORDER BY e.ordinality
    RETURNING stream_version, tx_id, position
),
snapshot AS (
    INSERT INTO {schema}.snapshots AS stored (stream_id, stream_version, state_version, state)
    SELECT $1::text, s.version, $13::integer, $14::jsonb
      FROM stream s
     WHERE $14::jsonb IS NOT NULL
    ON CONFLICT (stream_id) DO UPDATE
       SET stream_version = excluded.stream_version,
           state_version = excluded.state_version,
           state = excluded.state,
           taken_at = now()
),
outbox AS (
    INSERT INTO {schema}.outbox (message_id, topic, key, event_type, event_version, payload,
                                 stream_id, stream_version, metadata, key_hash)
    SELECT o.message_id, o.topic, o.key, o.event_type, o.event_version, o.payload, o.stream_id,
           o.stream_version, o.metadata, o.key_hash
      FROM stream s,
           unnest($15::uuid[], $16::text[], $17::text[], $18::text[], $19::integer[],
                  $20::json[], $21::text[], $22::bigint[], $23::json[], $24::integer[])
           WITH ORDINALITY AS o(message_id, topic, key, event_type, event_version, payload,
                                stream_id, stream_version, metadata, key_hash, ordinality)
     ORDER BY o.ordinality
),
answer AS (
    SELECT false AS is_duplicate, NULL::text AS stream_id,
           w.stream_version - $3::bigint + 1 AS first_version, w.stream_version AS last_version,
           w.tx_id, w.position AS last_position
      FROM written w
     ORDER BY w.position DESC
     LIMIT 1
)
