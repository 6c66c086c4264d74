-- Which version of each projection serves queries. A new version rebuilds
-- beside the serving one, under a lease and a checkpoint of its own, and
-- takes its place here in the transaction that promotes it once it has
-- caught up; the version only ever grows.
CREATE TABLE {schema}.projection_serving (
    name        text        PRIMARY KEY,
    version     bigint      NOT NULL,
    promoted_at timestamptz NOT NULL DEFAULT now()
);

-- Projections that ran before versions were promoted: before this migration
-- one version of a projection ran at a time, so the newest version with a
-- checkpoint is the one that serves.
INSERT INTO {schema}.projection_serving (name, version)
SELECT substring(name FROM '^projection:(.*):v[0-9]+$'),
       max(substring(name FROM ':v([0-9]+)$')::bigint)
  FROM {schema}.checkpoints
 WHERE name ~ '^projection:.*:v[0-9]+$'
 GROUP BY 1;
