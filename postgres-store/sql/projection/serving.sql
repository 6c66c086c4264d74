-- The version of projection $1 that serves queries.
SELECT version FROM {schema}.projection_serving WHERE name = $1
