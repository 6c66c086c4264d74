-- How many events a reader of the global stream at ($1, $2) has still to
-- read, counted up to $3: the rows read_all.sql would return, below the
-- horizon. An index-only scan of (tx_id, position) where the visibility map
-- allows.
SELECT count(*)
  FROM (SELECT 1
          FROM {schema}.events
         WHERE (tx_id, position) > ($1, $2)
           AND tx_id < pg_snapshot_xmin(pg_current_snapshot())
         LIMIT $3) AS behind
