-- What the append that claimed a command id wrote.
SELECT stream_id, stream_version - append_event_count + 1, stream_version, tx_id, position
  FROM {schema}.events
 WHERE append_command_id = $1
