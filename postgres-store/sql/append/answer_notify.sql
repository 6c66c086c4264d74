-- The answer of the append, when it wrote, and a NOTIFY naming this
-- transaction on the channel in the statement's last parameter, sent at
-- commit (Notify::InTransaction, and appends in a transaction of the
-- caller's).
SELECT answer.*
  FROM answer
       CROSS JOIN LATERAL (SELECT pg_notify({channel}::text, answer.tx_id::text)) AS notified
