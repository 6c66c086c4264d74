-- The oldest transaction that has a transaction id and is still running,
-- anywhere in the cluster: it holds the horizon of the global stream back.
-- Prepared (two-phase) transactions count too.
SELECT pid, database, application_name, state, age_seconds
  FROM (SELECT pid, datname AS database, application_name, state,
               extract(epoch FROM clock_timestamp() - xact_start)::float8 AS age_seconds,
               age(backend_xid) AS xid_age
          FROM pg_stat_activity
         WHERE backend_xid IS NOT NULL
        UNION ALL
        SELECT NULL, database, 'prepared transaction ' || gid, 'prepared',
               extract(epoch FROM clock_timestamp() - prepared)::float8,
               age(transaction)
          FROM pg_prepared_xacts) AS running
 ORDER BY xid_age DESC
 LIMIT 1
