-- Whether the index named $1 (schema-qualified) is valid: NULL when there
-- is no such index, false when a failed CREATE INDEX CONCURRENTLY left it
-- invalid.
SELECT (SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass($1))
