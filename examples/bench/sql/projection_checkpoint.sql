-- The raw reader's checkpoint, moved in each batch's transaction.
UPDATE {schema}.raw_checkpoint_{round} SET tx_id = $1, position = $2
