-- The stream row's `version > 0` CHECK goes. Every append statement writes
-- the row, and PostgreSQL rebuilds a CHECK expression from its stored text
-- in every statement that writes the table: measured with callgrind on a
-- single-event append, about 14,000 instructions of some 390,000, the most
-- expensive part of the statement after its index writes. The statements
-- (sql/append/) already keep the version positive: a new row gets the
-- number of events appended and an update adds it, and the client refuses
-- an append without events before any statement runs.
ALTER TABLE {schema}.streams DROP CONSTRAINT IF EXISTS streams_version_check;
