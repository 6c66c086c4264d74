-- The single event's row in the columns of `answer`.
RETURNING false AS is_duplicate, NULL::text AS stream_id, stream_version AS first_version,
          stream_version AS last_version, tx_id, position AS last_position
