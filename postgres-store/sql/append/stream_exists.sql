-- An existing stream at any version: move it on, queueing as in
-- stream_any.sql. The transaction id is taken in `me`, after the lock
-- (MATERIALIZED keeps the planner from moving it into the scan of the row).
serialized AS (
    SELECT pg_advisory_xact_lock(hashtextextended('{schema}.' || $1::text, 0))
),
me AS MATERIALIZED (
    SELECT pg_current_xact_id() AS tx_id FROM serialized
),
stream AS (
    UPDATE {schema}.streams AS s
       SET version = s.version + $3::bigint,
           last_tx_id = me.tx_id,
           updated_at = now()
      FROM me
     WHERE s.stream_id = $1::text
       AND s.last_tx_id < me.tx_id
    RETURNING s.version
)
