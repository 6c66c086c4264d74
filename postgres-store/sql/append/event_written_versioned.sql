-- The answer of a lone single-event statement at any version, or on a
-- stream that must exist at any version: the event's version and global
-- position.
RETURNING stream_version, tx_id, position
