-- The on-disk size, in bytes, of each table the history fills (with its
-- TOAST, free space and visibility maps) and of each of their indexes:
-- name, table, whether it is an index, size.
SELECT c.relname::text, t.relname::text, c.relkind = 'i', pg_table_size(c.oid)
  FROM pg_class c
  JOIN pg_namespace n ON n.oid = c.relnamespace
  LEFT JOIN pg_index i ON i.indexrelid = c.oid
  JOIN pg_class t ON t.oid = coalesce(i.indrelid, c.oid)
 WHERE n.nspname = $1
   AND c.relkind IN ('r', 'i')
   AND t.relname IN ('events', 'streams', 'snapshots')
 ORDER BY t.relname, c.relkind DESC, c.relname
