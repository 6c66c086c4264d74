-- The raw reader's read model and checkpoint of round {round}, in the
-- store's schema.
CREATE TABLE {schema}.raw_balances_{round} (
    account  text   PRIMARY KEY,
    balance  bigint NOT NULL,
    deposits bigint NOT NULL
);
CREATE TABLE {schema}.raw_checkpoint_{round} (tx_id xid8 NOT NULL, position bigint NOT NULL);
INSERT INTO {schema}.raw_checkpoint_{round} VALUES ('0', 0);
