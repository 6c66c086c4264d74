-- The horizon of the global stream readers: every transaction below it has
-- finished.
SELECT pg_snapshot_xmin(pg_current_snapshot())
