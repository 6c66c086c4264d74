-- The raw limit of the relay's reads: a page of the outbox after ($1, $2),
-- in the relay's (tx_id, position) order, with every column it reads.
SELECT tx_id, position, recorded_at, message_id, topic, key, event_type, event_version, payload,
       stream_id, stream_version, metadata
  FROM {schema}.outbox
 WHERE (tx_id, position) > ($1, $2)
 ORDER BY tx_id, position
 LIMIT $3
