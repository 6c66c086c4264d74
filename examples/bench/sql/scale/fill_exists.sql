-- Whether the schema holds a record of a fill (NULL when it does not).
SELECT to_regclass($1)::text
