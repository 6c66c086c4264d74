-- The raw limit of the relay's pruning: the rows read, by position.
DELETE FROM {schema}.outbox
 WHERE position = ANY($1)
