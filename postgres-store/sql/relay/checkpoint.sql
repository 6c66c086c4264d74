-- The checkpoint named $1.
SELECT tx_id, position FROM {schema}.checkpoints WHERE name = $1
