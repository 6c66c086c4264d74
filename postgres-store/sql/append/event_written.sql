-- The answer of a lone single-event statement: the event's version and
-- global position, the fewest columns that say what was written (the
-- server sets up the output of every column at every execution).
RETURNING stream_version, tx_id, position
