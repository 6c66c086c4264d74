-- Takes the session-level advisory lock named $1 if it is free: held until
-- it is unlocked or the session ends, so that a relay whose connection dies
-- loses its shard.
SELECT pg_try_advisory_lock(hashtextextended($1, 0))
