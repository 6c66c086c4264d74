-- A page of one outbox shard after the checkpoint ($1, $2): read_outbox.sql
-- with the shard filter, $4 the shard count and $5 its index. The filter
-- is on the key's hash as the u32 it is (see 0003_relay.sql). A modulo with
-- a parameter cannot be served by an index on the hash, so the
-- (tx_id, position) index finds the rows and the filter drops the other
-- shards'; the outbox is pruned as it is published, so little is dropped.
-- The limit is a sub-select for the reason given in read_outbox.sql.
SELECT tx_id, position, recorded_at, message_id, topic, key, event_type, event_version, payload,
       stream_id, stream_version, metadata
  FROM {schema}.outbox
 WHERE (tx_id, position) > ($1, $2)
   AND tx_id < pg_snapshot_xmin(pg_current_snapshot())
   AND (key_hash::bigint & 4294967295) % $4::bigint = $5::bigint
 ORDER BY tx_id, position
 LIMIT (SELECT $3::bigint)
