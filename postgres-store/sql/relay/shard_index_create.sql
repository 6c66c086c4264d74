-- The partial index of one outbox shard (see read_shard.sql), built without
-- blocking appends: the rows of the shard in (tx_id, position) order.
CREATE INDEX CONCURRENTLY IF NOT EXISTS {index}
    ON {schema}.outbox (tx_id, position)
 WHERE (key_hash::bigint & 4294967295) % {shard_count} = {shard_index}
