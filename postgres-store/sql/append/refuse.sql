-- Run after a lone append wrote nothing (its stream row could not be
-- written): the first outcome of a command that ran already, or an error
-- (see migrations/0002_refuse_append.sql). $1 stream id, $2 expected
-- version, $3 command id (or NULL), as in the append.
SELECT * FROM {schema}.refuse_append($1::text, $2::bigint, $3::uuid)
