-- For the notifying session: a notification's own commit need not wait
-- for a WAL flush (the appends it names were flushed before they
-- returned).
SET synchronous_commit = off
