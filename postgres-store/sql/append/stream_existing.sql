-- An existing stream at exactly version $2: move it on. The writer that
-- made version $2 committed before this one read it, so this transaction's
-- id is younger; the comparison guards the rule that the stream's versions
-- follow the global order all the same.
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
