-- An append in one statement: moves the stream row by the expected
-- version, writes the events (the last one claiming the append's command
-- id), the snapshot and the outbox messages, and answers what it wrote.
--
-- Every variant the store runs is this file with the lines of some
-- `-- if` sections (README.md): one of `any`, `no_stream`,
-- `stream_exists`, `exact` (the expected version), one of `one_event`,
-- `arrays` (the parameters), one of `answer`, `insert_only`, `grouped`
-- (what the statement ends with), and `notify`, `refuse_in_statement`
-- where they apply. The common command, one event at an exact version in
-- autocommit without NOTIFY, is `exact one_event insert_only`.
--
-- The single events of several such commands that wait for the same lane
-- go as one statement (group commit, src/store/group/): `exact one_event
-- grouped` with its `-- for each append` sections once per append, each
-- append's parameters numbered after the ones before it and its stream
-- row CTE named stream_k from the second on, so that the server sets up
-- one statement and one INSERT for the group instead of one of each per
-- append. An append of NULLs pads a group to the statement's size and
-- writes nothing; an append whose expected version does not hold (or
-- whose stream's last writer is younger) writes nothing and answers no
-- row, and goes again alone. The others answer `stream_id, tx_id,
-- position`; the version each event got is its append's expected one plus
-- one. The stream rows are locked in the order of the appends, which the
-- group sorts by stream id as units of work do.
--
-- Parameters: $1 stream id, $2 expected version (NULL any, -1 the stream
-- must exist, n >= 0 exactly n), $3 number of events, $4 the command id
-- the append claims (or NULL), then
-- - one_event: $5 event id, $6 type, $7 type version, $8 payload,
--   $9 correlation id, $10 causation id, $11 command id of the metadata,
--   $12 the rest of the metadata (or NULL); with notify, $13 the channel;
-- - arrays: $5 to $12 the same event columns as arrays, $13 the snapshot's
--   state version and $14 its state (or NULL), $15 to $23 the outbox
--   message columns as arrays and $24 their keys' shard hashes; with
--   notify, $25 the channel.
--
-- The CTE `stream` writes the stream row and returns its new version, or
-- nothing when the expected version does not hold or the stream's last
-- writer is younger than this one: a writer must be younger than the
-- stream's last one, so that the stream's versions follow the global
-- (tx_id, position) order. Then nothing is written.
WITH
-- if any
-- Any version: insert the stream row, or move it on. Writers at any
-- version do not know the version they will get, so they queue: an
-- advisory lock per stream (which takes no transaction id while it waits)
-- is held before this transaction's id is taken, so each gets a younger id
-- than the one before. Should the id be older all the same (it was taken
-- earlier in a unit of work), the row is not written and the append fails
-- with a serialization failure: the unit is tried again.
serialized AS (
    SELECT pg_advisory_xact_lock(hashtextextended('{schema}.' || $1::text, 0))
)
, stream AS (
    INSERT INTO {schema}.streams AS s (stream_id, version, last_tx_id)
    SELECT $1::text, $3::bigint, pg_current_xact_id()
      FROM serialized
    ON CONFLICT (stream_id) DO UPDATE
       SET version = s.version + excluded.version,
           last_tx_id = excluded.last_tx_id,
           updated_at = now()
     WHERE s.last_tx_id < excluded.last_tx_id
    RETURNING s.version
)
-- end if
-- if no_stream
-- No stream yet (version 0): insert the stream row.
stream AS (
    INSERT INTO {schema}.streams (stream_id, version, last_tx_id)
    VALUES ($1::text, $3::bigint, pg_current_xact_id())
    ON CONFLICT (stream_id) DO NOTHING
    RETURNING version
)
-- end if
-- if stream_exists
-- An existing stream at any version: move it on, queueing as `any` does.
-- The transaction id is taken in `me`, after the lock (MATERIALIZED keeps
-- the planner from moving it into the scan of the row).
serialized AS (
    SELECT pg_advisory_xact_lock(hashtextextended('{schema}.' || $1::text, 0))
)
, me AS MATERIALIZED (
    SELECT pg_current_xact_id() AS tx_id FROM serialized
)
, stream AS (
    UPDATE {schema}.streams AS s
       SET version = s.version + $3::bigint,
           last_tx_id = me.tx_id,
           updated_at = now()
      FROM me
     WHERE s.stream_id = $1::text
       AND s.last_tx_id < me.tx_id
    RETURNING s.version
)
-- end if
-- if exact
-- An existing stream at exactly version $2: move it on. The writer that
-- made version $2 committed before this one read it, so this transaction's
-- id is younger; the comparison guards the rule all the same.
-- for each append, naming stream, joined by ,
stream AS (
    UPDATE {schema}.streams AS s
       SET version = s.version + $3::bigint,
           last_tx_id = pg_current_xact_id(),
           updated_at = now()
     WHERE s.stream_id = $1::text
       AND s.version = $2::bigint
       AND s.last_tx_id < pg_current_xact_id()
    RETURNING s.version
)
-- end for
-- end if
-- if one_event
-- One event, without snapshot or outbox messages; it claims the append's
-- command id. Where nothing follows it (insert_only: a lone append without
-- NOTIFY) the INSERT is the statement, answering only what the caller does
-- not know; otherwise it is the CTE `answer`.
-- if answer
, answer AS (
-- end if
INSERT INTO {schema}.events (stream_id, stream_version, event_id, event_type, event_version,
                             payload, correlation_id, causation_id, command_id, metadata,
                             append_command_id, append_event_count)
-- for each append, naming stream, joined by UNION ALL
SELECT $1::text, s.version, $5::uuid, $6::text, $7::integer, $8::jsonb, $9::uuid, $10::uuid,
       $11::uuid, $12::jsonb, $4::uuid, CASE WHEN $4::uuid IS NOT NULL THEN 1 END
  FROM stream s
-- end for
-- if answer
RETURNING false AS is_duplicate, NULL::text AS stream_id, stream_version AS first_version,
          stream_version AS last_version, tx_id, position AS last_position
)
-- end if
-- if insert_only
-- The fewest columns that say what was written (the server sets up the
-- output of every column at every execution): at an expected version
-- (none, or an exact one) the event's version is the expected one plus
-- one, so only its global position.
-- if no_stream or exact
RETURNING tx_id, position
-- end if
-- if any or stream_exists
RETURNING stream_version, tx_id, position
-- end if
-- end if
-- if grouped
RETURNING stream_id, tx_id, position
-- end if
-- end if
-- if arrays
-- Any number of events, an optional snapshot and outbox messages. The
-- last event claims the append's command id; the answer comes from its
-- row.
, written AS (
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
)
, snapshot AS (
    INSERT INTO {schema}.snapshots AS stored (stream_id, stream_version, state_version, state)
    SELECT $1::text, s.version, $13::integer, $14::jsonb
      FROM stream s
     WHERE $14::jsonb IS NOT NULL
    ON CONFLICT (stream_id) DO UPDATE
       SET stream_version = excluded.stream_version,
           state_version = excluded.state_version,
           state = excluded.state,
           taken_at = now()
)
, outbox AS (
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
)
, answer AS (
    SELECT false AS is_duplicate, NULL::text AS stream_id,
           w.stream_version - $3::bigint + 1 AS first_version, w.stream_version AS last_version,
           w.tx_id, w.position AS last_position
      FROM written w
     ORDER BY w.position DESC
     LIMIT 1
)
-- end if
-- if answer
-- The answer: the row of `answer` when the append wrote, none when it
-- could not write the stream row.
SELECT answer.*
  FROM answer
-- if notify
-- A NOTIFY naming this transaction on the channel, sent at commit
-- (Notify::InTransaction, and appends in a transaction of the caller's).
-- if one_event
       CROSS JOIN LATERAL (SELECT pg_notify($13::text, answer.tx_id::text)) AS notified
-- end if
-- if arrays
       CROSS JOIN LATERAL (SELECT pg_notify($25::text, answer.tx_id::text)) AS notified
-- end if
-- end if
-- if refuse_in_statement
-- In a unit of work (or a transaction of the caller's) a refused append
-- must fail the transaction before the statements after it run: when the
-- stream row was not written, refuse_append (migrations/0002) answers with
-- the first outcome of a command that ran already, or fails the statement.
UNION ALL
SELECT refused.*
  FROM {schema}.refuse_append($1::text, $2::bigint, $4::uuid) AS refused
 WHERE NOT EXISTS (SELECT FROM stream)
-- end if
-- end if
