-- The event of the append at place {n} of write_group.sql, when its stream
-- row was written. Its parameters, as write_event.sql's: {1} stream id,
-- {2} expected version, {3} the command id the append claims (or NULL),
-- {4} event id, {5} type, {6} type version, {7} payload, {8} correlation
-- id, {9} causation id, {10} command id of the metadata, {11} the rest of
-- the metadata (or NULL).
SELECT {1}::text, version, {4}::uuid, {5}::text, {6}::integer, {7}::jsonb, {8}::uuid,
       {9}::uuid, {10}::uuid, {11}::jsonb, {3}::uuid,
       CASE WHEN {3}::uuid IS NOT NULL THEN 1 END
  FROM stream_{n}
