-- What is left in an outbox being drained.
SELECT count(*)
  FROM {schema}.outbox
