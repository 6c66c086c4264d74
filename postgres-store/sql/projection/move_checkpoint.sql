-- Moves the checkpoint $1 from ($2, $3) to ($4, $5), in the transaction of
-- the batch it covers. Compare-and-set: when another runner moved it first,
-- no row matches (a concurrent mover's row lock makes this wait and then see
-- the moved row), and the batch must not commit.
UPDATE {schema}.checkpoints
   SET tx_id = $4, position = $5, updated_at = now()
 WHERE name = $1
   AND (tx_id, position) = ($2, $3)
