-- The position of the event at offset $1 of the global stream.
SELECT tx_id, position
  FROM {schema}.events
 ORDER BY tx_id, position
OFFSET $1
 LIMIT 1
