-- Serialises migrations of one schema across every instance starting at
-- once; released when the migrating transaction ends.
SELECT pg_advisory_xact_lock(hashtextextended($1, 0))
