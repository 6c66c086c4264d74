-- What a previous run's catch-ups left: checkpoints, serving versions and
-- parked events of their projections (the fill writes none of these).
DELETE FROM {schema}.checkpoints;
DELETE FROM {schema}.projection_serving;
DELETE FROM {schema}.projection_parked;
