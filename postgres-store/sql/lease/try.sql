-- Takes the session-level advisory lock named $1 if it is free: held until
-- it is unlocked or the session ends, so that a lease holder whose
-- connection dies loses its lease (a relay its shard, a projection runner
-- its projection version).
SELECT pg_try_advisory_lock(hashtextextended($1, 0))
