-- The read model's one upsert per event: an account's balance and deposits.
INSERT INTO {schema}.{table} AS balance (account, balance, deposits)
VALUES ($1, $2, 1)
ON CONFLICT (account) DO UPDATE
   SET balance = balance.balance + excluded.balance,
       deposits = balance.deposits + 1
