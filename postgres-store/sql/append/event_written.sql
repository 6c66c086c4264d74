-- The answer of a lone single-event statement whose stream was expected at
-- a version (none, or an exact one): the event's global position, the
-- fewest columns that say what was written (the server sets up the output
-- of every column at every execution); its version is the expected one
-- plus one.
RETURNING tx_id, position
