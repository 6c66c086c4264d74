-- Deletes up to $3 claims of consumer $1 received before $2. Batches keep
-- each statement's locks and WAL small when a long-stopped consumer has
-- many.
DELETE FROM {schema}.inbox AS inbox
 USING (SELECT consumer, message_id
          FROM {schema}.inbox
         WHERE consumer = $1 AND received_at < $2
         LIMIT $3) AS old
 WHERE inbox.consumer = old.consumer
   AND inbox.message_id = old.message_id
