-- What the last holder of each relay shard's lease may have left in flight
-- to the broker: set before it sends anything, cleared when it stops with
-- everything acknowledged, so that the next holder waits for an earlier
-- holder's records only when there may be some. Keyed like the relay's
-- checkpoint (relay:{name}:{index}/{count}); written only on the lease's own
-- connection. A shard with a checkpoint and no row here (a relay of an
-- earlier release led it) counts as possibly in flight.
CREATE TABLE {schema}.relay_in_flight (
    name       text        NOT NULL,
    possible   boolean     NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT relay_in_flight_pkey PRIMARY KEY (name)
);
