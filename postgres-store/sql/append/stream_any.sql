-- Any version: insert the stream row, or move it on.
--
-- A writer must be younger than the stream's last one, so that the stream's
-- versions follow the global (tx_id, position) order. Writers at any version
-- do not know the version they will get, so they queue: an advisory lock per
-- stream (which takes no transaction id while it waits) is held before this
-- transaction's id is taken, so each gets a younger id than the one before.
-- Should the id be older all the same (it was taken earlier in a unit of
-- work), the row is not written and the statement fails with a
-- serialization failure: the unit is tried again.
serialized AS (
    SELECT pg_advisory_xact_lock(hashtextextended('{schema}.' || $1::text, 0))
),
stream AS (
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
