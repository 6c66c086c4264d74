-- The youngest transaction whose events the horizon still hides: it has
-- committed, but an older transaction is still running.
SELECT max(tx_id) FROM {schema}.events WHERE tx_id >= pg_snapshot_xmin(pg_current_snapshot())
