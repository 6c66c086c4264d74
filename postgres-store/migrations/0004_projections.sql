-- What the projection runners need besides their checkpoints (kept in
-- `checkpoints` as `projection:{name}:v{version}`): a place for the events a
-- projection could not apply.

-- Events a projection's handler failed on for good, with the last error;
-- kept until the event is applied (after a fix) or dropped by an operator.
-- The event's columns are copied, as in `events`, so that a parked event
-- can be shown and replayed on its own.
CREATE TABLE {schema}.projection_parked (
    name           text        NOT NULL,
    version        bigint      NOT NULL,
    event_id       uuid        NOT NULL,
    stream_id      text        NOT NULL,
    stream_version bigint      NOT NULL,
    tx_id          xid8        NOT NULL,
    position       bigint      NOT NULL,
    event_type     text        NOT NULL,
    event_version  integer     NOT NULL,
    payload        jsonb       NOT NULL,
    correlation_id uuid,
    causation_id   uuid,
    command_id     uuid,
    metadata       jsonb,
    recorded_at    timestamptz NOT NULL,
    error          text        NOT NULL,
    attempts       bigint      NOT NULL,
    parked_at      timestamptz NOT NULL,
    CONSTRAINT projection_parked_pkey PRIMARY KEY (name, version, event_id)
);
