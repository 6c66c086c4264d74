-- Which of the given event ids is stored already, to name it in the error
-- after a unique violation.
SELECT event_id FROM {schema}.events WHERE event_id = ANY($1) LIMIT 1
