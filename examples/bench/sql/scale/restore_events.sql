-- The events a previous run's measurements appended after the fill's last
-- position $1.
DELETE FROM {schema}.events
 WHERE position > $1
