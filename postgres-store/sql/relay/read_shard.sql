-- A page of one outbox shard after the checkpoint ($1, $2): read_outbox.sql
-- with the shard filter in the shard_index line, the shard's count and
-- index written in (relay.rs, for_shard), nothing with a single shard. The
-- filter is on the key's hash as the u32 it is (see 0003_relay.sql). With
-- the numbers written in, the shard's partial index
-- (PgEventStore::create_shard_indexes) can find its rows in order; without
-- it, the (tx_id, position) index finds them and the filter drops the
-- other shards'. (A modulo by a parameter can use no partial index, and
-- beside the written-in filter it made the planner expect a single row and
-- sort every row left in the shard for each page.)
-- The limit is a sub-select for the reason given in read_outbox.sql.
SELECT tx_id, position, recorded_at, message_id, topic, key, event_type, event_version, payload,
       stream_id, stream_version, metadata
  FROM {schema}.outbox
 WHERE (tx_id, position) > ($1, $2)
   AND tx_id < pg_snapshot_xmin(pg_current_snapshot())
   {shard_index}
 ORDER BY tx_id, position
 LIMIT (SELECT $3::bigint)
