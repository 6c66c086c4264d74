-- The streams a previous run's measurements created (they wrote only new
-- streams, above the fill's highest position $1).
DELETE FROM {schema}.streams
 WHERE stream_id IN (SELECT stream_id FROM {schema}.events WHERE position > $1)
