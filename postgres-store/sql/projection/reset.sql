-- Forgets the checkpoint $1 and the events parked for projection $2 at
-- version $3, so that the version is built again from the start.
WITH parked AS (
    DELETE FROM {schema}.projection_parked WHERE name = $2 AND version = $3
)
DELETE FROM {schema}.checkpoints WHERE name = $1
