-- Outbox payloads and metadata as `json`, the text as the append wrote it,
-- in place of `jsonb`. Nothing queries into them: the relay reads them back
-- verbatim and hands the bytes to the producer, and turning `jsonb` back
-- into text (jsonb_send, escape_json) was a fifth of the server's work in a
-- drain. `json` is also cheaper to write (checked, not converted), and what
-- reaches the broker is byte for byte what was appended.
--
-- Changing a column's type rewrites the table under an exclusive lock: the
-- outbox holds only what is not yet published, so this is short, but
-- appends that write messages wait for it.
ALTER TABLE {schema}.outbox
    ALTER COLUMN payload TYPE json USING payload::json,
    ALTER COLUMN metadata TYPE json USING metadata::json;
ALTER TABLE {schema}.outbox_parked
    ALTER COLUMN payload TYPE json USING payload::json,
    ALTER COLUMN metadata TYPE json USING metadata::json;
