-- Events in the store.
SELECT count(*)
  FROM {schema}.events
