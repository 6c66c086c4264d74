-- Records whether the holder of the relay shard $1's lease may have records
-- in flight ($2).
INSERT INTO {schema}.relay_in_flight (name, possible)
VALUES ($1, $2)
ON CONFLICT (name) DO UPDATE
   SET possible = excluded.possible,
       updated_at = now()
