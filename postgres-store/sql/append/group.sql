-- The single events of several lone appends, each to an existing stream
-- expected at an exact version, written by one statement in one round trip
-- (group commit, src/store/group/): the server sets up one statement and
-- one INSERT for the group instead of one of each per append.
--
-- Written here for one append; the statement for n appends has each
-- `-- for each append` section n times, joined by the words after `joined
-- by`, the k-th copy (from 0) with its parameters numbered from 11k + 1
-- and its CTE named stream_k. The parameters of one append: $1 stream id,
-- $2 expected version, $3 the command id the append claims (or NULL), $4
-- event id, $5 type, $6 type version, $7 payload, $8 correlation id, $9
-- causation id, $10 command id of the metadata, $11 the rest of the
-- metadata (or NULL). An append of NULLs pads a group to the statement's
-- size and writes nothing.
--
-- Each stream row is found by its key, as a lone append's is, and moved on
-- by its one event, as append.sql's `exact` does; the rows are locked in
-- the order of the appends, which the group sorts by stream id as units of
-- work do. An append whose expected version does not hold (or whose
-- stream's last writer is younger) writes nothing and answers no row: it
-- goes again alone. The others answer `stream_id, tx_id, position`; the
-- version each event got is its append's expected one plus one.
WITH
-- for each append, joined by ,
stream_0 AS (
    UPDATE {schema}.streams AS s
       SET version = s.version + 1,
           last_tx_id = pg_current_xact_id(),
           updated_at = now()
     WHERE s.stream_id = $1::text
       AND s.version = $2::bigint
       AND s.last_tx_id < pg_current_xact_id()
    RETURNING s.version
)
-- end for
INSERT INTO {schema}.events (stream_id, stream_version, event_id, event_type, event_version,
                             payload, correlation_id, causation_id, command_id, metadata,
                             append_command_id, append_event_count)
-- for each append, joined by UNION ALL
SELECT $1::text, version, $4::uuid, $5::text, $6::integer, $7::jsonb, $8::uuid, $9::uuid,
       $10::uuid, $11::jsonb, $3::uuid, CASE WHEN $3::uuid IS NOT NULL THEN 1 END
  FROM stream_0
-- end for
RETURNING stream_id, tx_id, position
