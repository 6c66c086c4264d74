-- The checkpoint named $1: a relay's of one outbox shard, or a projection
-- version's.
SELECT tx_id, position FROM {schema}.checkpoints WHERE name = $1
