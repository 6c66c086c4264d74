-- What ran: one row per applied migration, with a checksum of its text so
-- that an edited migration is noticed instead of silently skipped.
CREATE TABLE IF NOT EXISTS {schema}.schema_migrations (
    version    integer     NOT NULL,
    name       text        NOT NULL,
    checksum   bigint      NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT schema_migrations_pkey PRIMARY KEY (version)
)
