-- Drops a shard index that a failed build left invalid, without blocking
-- appends.
DROP INDEX CONCURRENTLY IF EXISTS {schema}.{index}
