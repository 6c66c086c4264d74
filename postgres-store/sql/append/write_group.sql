-- The single events of several lone appends, each to an existing stream
-- expected at an exact version, written by one statement in one round trip
-- (group commit, store/group.rs): the server sets up one statement and one
-- INSERT for the group instead of one of each per append.
--
-- `{streams}` stands for one group_stream.sql per append, `{events}` for
-- one group_event.sql per append joined by UNION ALL. The parameters of
-- the append at place n (from 0) are $(11n + 1) to $(11n + 11), in the
-- order group_event.sql gives. An append of NULLs pads a group to the
-- statement's size and writes nothing.
--
-- The stream rows are locked in the order of the appends: the group
-- sorts them by stream id, as units of work do. An append whose expected
-- version does not hold (or whose stream's last writer is younger) writes
-- nothing and answers no row: it goes again alone. The others answer
-- `stream_id, tx_id, position`; the version each event got is its
-- append's expected one plus one.
WITH
{streams}
INSERT INTO {schema}.events (stream_id, stream_version, event_id, event_type, event_version,
                             payload, correlation_id, causation_id, command_id, metadata,
                             append_command_id, append_event_count)
{events}
RETURNING stream_id, tx_id, position
