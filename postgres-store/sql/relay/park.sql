-- Keeps a record relay $1 could not publish, with the reason $14.
INSERT INTO {schema}.outbox_parked (relay, tx_id, position, recorded_at, message_id, topic, key,
                                    event_type, event_version, payload, stream_id,
                                    stream_version, metadata, reason)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
