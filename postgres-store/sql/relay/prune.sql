-- Deletes up to $3 rows of the shard ($4 count, $5 index) at or before
-- ($1, $2), oldest first.
DELETE FROM {schema}.outbox
 WHERE position IN (SELECT position
                      FROM {schema}.outbox
                     WHERE (tx_id, position) <= ($1, $2)
                       AND (key_hash::bigint & 4294967295) % $4::bigint = $5::bigint
                     ORDER BY tx_id, position
                     LIMIT $3)
