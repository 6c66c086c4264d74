-- The tables of the event store. `{schema}` stands for the configured schema,
-- validated as an identifier and quoted before this text is run.

-- One row per stream: the expected-version check is one update of this row,
-- and the row lock orders concurrent writers of a stream.
CREATE TABLE {schema}.streams (
    stream_id  text        NOT NULL,
    version    bigint      NOT NULL CHECK (version > 0),
    -- The transaction that last appended: a writer must have a younger one,
    -- so that a stream's versions follow the global (tx_id, position) order.
    last_tx_id xid8        NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT streams_pkey PRIMARY KEY (stream_id)
);

-- Every event. The global order is (tx_id, position): readers take only rows
-- of transactions below pg_snapshot_xmin(pg_current_snapshot()), so that no
-- row can ever appear behind a checkpoint.
CREATE TABLE {schema}.events (
    position       bigint      GENERATED ALWAYS AS IDENTITY,
    tx_id          xid8        NOT NULL DEFAULT pg_current_xact_id(),
    stream_id      text        NOT NULL,
    stream_version bigint      NOT NULL,
    event_id       uuid        NOT NULL,
    event_type     text        NOT NULL,
    event_version  integer     NOT NULL,
    payload        jsonb       NOT NULL,
    -- The identifiers of the metadata have columns of their own (cheap to
    -- read, and to index should one search by them); the rest of it is
    -- `metadata`, NULL when empty.
    correlation_id uuid,
    causation_id   uuid,
    command_id     uuid,
    metadata       jsonb,
    recorded_at    timestamptz NOT NULL DEFAULT now(),
    -- Set on the last event of an append that carried a command id: that id
    -- and the number of events the append wrote, so that a resent command
    -- finds the first outcome in one row. The unique index below lets one
    -- append only claim a command id, also when two race.
    append_command_id  uuid,
    append_event_count integer,
    CONSTRAINT events_pkey PRIMARY KEY (position),
    CONSTRAINT events_event_id_key UNIQUE (event_id),
    CONSTRAINT events_stream_version_key UNIQUE (stream_id, stream_version)
);
CREATE INDEX events_tx_id_position_idx ON {schema}.events (tx_id, position);
CREATE UNIQUE INDEX events_append_command_id_idx ON {schema}.events (append_command_id)
    WHERE append_command_id IS NOT NULL;

-- The newest snapshot of each stream.
CREATE TABLE {schema}.snapshots (
    stream_id      text        NOT NULL,
    stream_version bigint      NOT NULL,
    state_version  integer     NOT NULL,
    state          jsonb       NOT NULL,
    taken_at       timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT snapshots_pkey PRIMARY KEY (stream_id)
);

-- Messages for other services, written with the events that caused them and
-- read in the same gap-free (tx_id, position) order.
CREATE TABLE {schema}.outbox (
    position       bigint      GENERATED ALWAYS AS IDENTITY,
    tx_id          xid8        NOT NULL DEFAULT pg_current_xact_id(),
    message_id     uuid        NOT NULL,
    topic          text        NOT NULL,
    key            text        NOT NULL,
    event_type     text        NOT NULL,
    event_version  integer     NOT NULL,
    payload        jsonb       NOT NULL,
    stream_id      text        NOT NULL,
    stream_version bigint      NOT NULL,
    metadata       jsonb       NOT NULL,
    recorded_at    timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT outbox_pkey PRIMARY KEY (position)
);
CREATE INDEX outbox_tx_id_position_idx ON {schema}.outbox (tx_id, position);

-- Where each named reader of the global stream or the outbox (projection,
-- relay, saga trigger) stands: the (tx_id, position) of the last row it
-- processed.
CREATE TABLE {schema}.checkpoints (
    name       text        NOT NULL,
    tx_id      xid8        NOT NULL,
    position   bigint      NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT checkpoints_pkey PRIMARY KEY (name)
);

-- Messages a consumer has handled, inserted in the handler's transaction so
-- that a redelivery has no second effect.
CREATE TABLE {schema}.inbox (
    consumer    text        NOT NULL,
    message_id  uuid        NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT inbox_pkey PRIMARY KEY (consumer, message_id)
);
CREATE INDEX inbox_received_at_idx ON {schema}.inbox (received_at);
