-- As held_back_events.sql, for the outbox.
SELECT max(tx_id) FROM {schema}.outbox WHERE tx_id >= pg_snapshot_xmin(pg_current_snapshot())
