-- Saves the checkpoint $1 at ($2, $3), never moving it back: a relay that
-- saves late (its save crossed a takeover's) must not undo the progress of
-- the one after it.
INSERT INTO {schema}.checkpoints AS saved (name, tx_id, position)
VALUES ($1, $2, $3)
ON CONFLICT (name) DO UPDATE
   SET tx_id = excluded.tx_id,
       position = excluded.position,
       updated_at = now()
 WHERE (saved.tx_id, saved.position) < (excluded.tx_id, excluded.position)
