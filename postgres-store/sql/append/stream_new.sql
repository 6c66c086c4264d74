-- No stream yet (version 0): insert the stream row.
stream AS (
    INSERT INTO {schema}.streams (stream_id, version, last_tx_id)
    VALUES ($1::text, $3::bigint, pg_current_xact_id())
    ON CONFLICT (stream_id) DO NOTHING
    RETURNING version
)
