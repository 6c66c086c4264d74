-- The records relay $1 parked, oldest first, in the columns of
-- read_shard.sql and the reason.
SELECT tx_id, position, recorded_at, message_id, topic, key, event_type, event_version, payload,
       stream_id, stream_version, metadata, reason
  FROM {schema}.outbox_parked
 WHERE relay = $1
 ORDER BY parked_id
