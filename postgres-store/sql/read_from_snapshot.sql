-- The newest snapshot of one stream, if it has one, and the events after
-- it (all of them without one). One statement reads both in one snapshot
-- of the database, so the events start right after the snapshot returned
-- even while another is written.
--
-- The columns are those of read_stream.sql and then state_version, state.
-- The snapshot's row has its version in stream_version, its taken_at in
-- recorded_at and state_version not NULL; the events' rows have NULL
-- there. The events are all after the snapshot, so ordering by version
-- returns its row first. The server sorts the events it returns: those
-- written since the last snapshot, as many as the snapshot policy lets
-- pass between two.
WITH snapshot AS (
    SELECT stream_version, state_version, state, taken_at
      FROM {schema}.snapshots
     WHERE stream_id = $1
)
SELECT stream_version, NULL::xid8, NULL::bigint, NULL::uuid, NULL::text, NULL::integer, NULL::jsonb,
       NULL::uuid, NULL::uuid, NULL::uuid, NULL::jsonb, taken_at, state_version, state
  FROM snapshot
UNION ALL
SELECT stream_version, tx_id, position, event_id, event_type, event_version, payload,
       correlation_id, causation_id, command_id, metadata, recorded_at, NULL, NULL
  FROM {schema}.events
 WHERE stream_id = $1
   AND stream_version > coalesce((SELECT stream_version FROM snapshot), 0)
 ORDER BY 1
