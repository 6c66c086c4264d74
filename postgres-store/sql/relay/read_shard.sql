-- A page of the outbox, or of one shard of it (`sharded`), after the
-- checkpoint ($1, $2), under the same horizon as the global stream (see
-- read_all.sql).
--
-- The shard filter is on the key's hash as the u32 it is (see
-- 0003_relay.sql), with the shard's count and index written in: a partial
-- index of the shard (PgOutbox::create_shard_indexes) can then find its
-- rows in order; without it, the (tx_id, position) index finds them and
-- the filter drops the other shards'. (A modulo by a parameter can use no
-- partial index, and beside the written-in filter it made the planner
-- expect a single row and sort every row left in the shard for each page.)
--
-- The limit $3 is a sub-select so that the planner does not know it: told
-- the limit, it compares it with its estimate of the matching rows, which
-- for an outbox filled since the last ANALYZE is far too low, and sorts
-- every row after the checkpoint (a bitmap scan and an external sort: 235 ms
-- for a page of 10,000 out of 200,000 rows) instead of reading the first
-- rows of the (tx_id, position) index (10 ms).
SELECT tx_id, position, recorded_at, message_id, topic, key, event_type, event_version, payload,
       stream_id, stream_version, metadata
  FROM {schema}.outbox
 WHERE (tx_id, position) > ($1, $2)
   AND tx_id < pg_snapshot_xmin(pg_current_snapshot())
-- if sharded
   AND (key_hash::bigint & 4294967295) % {shard_count} = {shard_index}
-- end if
 ORDER BY tx_id, position
 LIMIT (SELECT $3::bigint)
