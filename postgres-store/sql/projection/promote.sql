-- Makes version $2 of projection $1 the serving one, unless the same or a
-- newer version serves already (then no row changes). A concurrent promotion
-- of the same name waits for this one's row lock and then compares with the
-- version it wrote.
INSERT INTO {schema}.projection_serving AS serving (name, version)
VALUES ($1, $2)
ON CONFLICT (name) DO UPDATE
   SET version = excluded.version, promoted_at = now()
 WHERE serving.version < excluded.version
