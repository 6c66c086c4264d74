-- The first checkpoint $1, at ($2, $3), of a projection that has none. A
-- runner that races another one here waits for its insert and then inserts
-- nothing, which fails its compare-and-set.
INSERT INTO {schema}.checkpoints (name, tx_id, position)
VALUES ($1, $2, $3)
ON CONFLICT (name) DO NOTHING
