-- What the outbox relays need: the shard of each message, and a place for
-- the messages a broker refused for good.

-- The key's shard hash (annals::key_hash, 32-bit FNV-1a of the key's UTF-8
-- bytes), kept as the bits of a u32 in a signed integer. Appends compute it
-- client-side; this function computes the same value in SQL, to fill the
-- rows written before this migration and for operators who want to find a
-- key's shard: (outbox_key_hash(key)::bigint & 4294967295) % count.
CREATE FUNCTION {schema}.outbox_key_hash(p_key text)
RETURNS integer
LANGUAGE plpgsql
IMMUTABLE STRICT PARALLEL SAFE
AS $$
DECLARE
    v_bytes bytea := convert_to(p_key, 'UTF8');
    v_hash  bigint := 2166136261;
BEGIN
    FOR i IN 0 .. length(v_bytes) - 1 LOOP
        -- The product stays below 2^57, so bigint arithmetic is exact.
        v_hash := ((v_hash # get_byte(v_bytes, i)) * 16777619) & 4294967295;
    END LOOP;
    RETURN (CASE WHEN v_hash >= 2147483648 THEN v_hash - 4294967296 ELSE v_hash END)::integer;
END;
$$;

-- Added nullable, filled, then made NOT NULL, so that the migration also
-- applies to an outbox that holds messages. Without a default, a writer of
-- an older release (which does not set the column) fails its appends
-- instead of putting messages into the wrong shard.
ALTER TABLE {schema}.outbox ADD COLUMN key_hash integer;
UPDATE {schema}.outbox SET key_hash = {schema}.outbox_key_hash(key);
ALTER TABLE {schema}.outbox ALTER COLUMN key_hash SET NOT NULL;

-- Records a relay could not publish because the broker refused them for
-- good, with the reason; read oldest first (by parked_id).
CREATE TABLE {schema}.outbox_parked (
    parked_id      bigint      GENERATED ALWAYS AS IDENTITY,
    relay          text        NOT NULL,
    tx_id          xid8        NOT NULL,
    position       bigint      NOT NULL,
    recorded_at    timestamptz NOT NULL,
    message_id     uuid        NOT NULL,
    topic          text        NOT NULL,
    key            text        NOT NULL,
    event_type     text        NOT NULL,
    event_version  integer     NOT NULL,
    payload        jsonb       NOT NULL,
    stream_id      text        NOT NULL,
    stream_version bigint      NOT NULL,
    metadata       jsonb       NOT NULL,
    reason         text        NOT NULL,
    parked_at      timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT outbox_parked_pkey PRIMARY KEY (parked_id)
);
CREATE INDEX outbox_parked_relay_idx ON {schema}.outbox_parked (relay, parked_id);
