-- Wakes the readers listening on the store's channel; the payload is the
-- newest transaction id the notifier knows to be committed.
SELECT pg_notify($1, $2)
