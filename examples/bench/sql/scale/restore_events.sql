-- The events a previous run's measurements appended: those above the
-- fill's highest position $1.
DELETE FROM {schema}.events
 WHERE position > $1
