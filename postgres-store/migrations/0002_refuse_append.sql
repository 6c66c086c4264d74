-- Called by the append statements (sql/append/) when their stream row could
-- not be written. A command that ran already (an append claimed p_command_id)
-- gets its first outcome, as a row. Otherwise the statement, and with it the
-- transaction, fails with an error the client maps by SQLSTATE:
--
-- - ZA001 (version conflict): the stream is not at the expected version.
--   DETAIL holds its actual version as a decimal number, empty when the
--   stream does not exist.
-- - 40001 (serialization_failure): the expected version holds now, but the
--   row changed while the statement ran (a concurrent writer created it, or
--   wrote it in a younger transaction, whose events would sort after this
--   one's in the global order). Nothing was written; a retry, in a new
--   transaction, succeeds or finds a real conflict.
--
-- p_expected: NULL for any version, -1 for "the stream must exist", n >= 0
-- for exactly n (0: no stream yet). Being VOLATILE, the function reads the
-- rows as committed now, not as the calling statement's snapshot saw them.
CREATE FUNCTION {schema}.refuse_append(p_stream_id text, p_expected bigint, p_command_id uuid)
RETURNS TABLE (is_duplicate boolean, stream_id text, first_version bigint,
               last_version bigint, tx_id xid8, last_position bigint)
LANGUAGE plpgsql
VOLATILE
AS $$
DECLARE
    v_actual bigint;
BEGIN
    RETURN QUERY
        SELECT true, e.stream_id, e.stream_version - e.append_event_count + 1,
               e.stream_version, e.tx_id, e.position
          FROM {schema}.events e
         WHERE e.append_command_id = p_command_id;
    IF FOUND THEN
        RETURN;
    END IF;
    SELECT s.version INTO v_actual FROM {schema}.streams s WHERE s.stream_id = p_stream_id;
    IF p_expected IS NULL
       OR (p_expected < 0 AND v_actual IS NOT NULL)
       OR p_expected = coalesce(v_actual, 0) THEN
        RAISE EXCEPTION 'stream % changed while appending; retry', p_stream_id
            USING ERRCODE = 'serialization_failure';
    END IF;
    RAISE EXCEPTION 'version conflict on stream %', p_stream_id
        USING ERRCODE = 'ZA001', DETAIL = coalesce(v_actual::text, '');
END;
$$;
