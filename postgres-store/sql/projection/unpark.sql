-- Forgets event $3 parked for projection $1 at version $2.
DELETE FROM {schema}.projection_parked
 WHERE name = $1 AND version = $2 AND event_id = $3
