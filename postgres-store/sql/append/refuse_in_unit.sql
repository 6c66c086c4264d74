-- In a unit of work (or a transaction of the caller's) a refused append
-- must fail inside the transaction, before the statements after it run:
-- when the stream row was not written, refuse_append answers with the
-- first outcome of a command that ran already, or fails the statement.
UNION ALL
SELECT refused.*
  FROM {schema}.refuse_append($1::text, $2::bigint, $4::uuid) AS refused
 WHERE NOT EXISTS (SELECT FROM stream)
