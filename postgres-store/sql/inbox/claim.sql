-- Records that consumer $1 handles message $2. A row already there
-- (committed, or inserted by a transaction still running, which this one
-- then waits for) inserts nothing: the caller sees zero rows and skips.
INSERT INTO {schema}.inbox (consumer, message_id)
VALUES ($1, $2)
ON CONFLICT (consumer, message_id) DO NOTHING
