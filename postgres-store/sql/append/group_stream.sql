-- The stream step of the append at place {n} of write_group.sql, as
-- stream_existing.sql: an existing stream, {1}, at exactly version {2},
-- moved on by its one event. Found by its key, as a lone append's is.
stream_{n} AS (
    UPDATE {schema}.streams AS s
       SET version = s.version + 1,
           last_tx_id = pg_current_xact_id(),
           updated_at = now()
     WHERE s.stream_id = {1}::text
       AND s.version = {2}::bigint
       AND s.last_tx_id < pg_current_xact_id()
    RETURNING s.version
)
