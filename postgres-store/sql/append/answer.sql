-- The answer of the append, when it wrote; no row when it could not write
-- the stream row.
SELECT * FROM answer
