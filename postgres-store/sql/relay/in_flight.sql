-- What may be in flight for the relay shard named $1: the recorded flag,
-- or NULL, and whether the shard has a checkpoint.
SELECT (SELECT possible FROM {schema}.relay_in_flight WHERE name = $1),
       EXISTS (SELECT FROM {schema}.checkpoints WHERE name = $1)
