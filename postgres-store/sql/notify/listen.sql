-- Wakes this session on the store's channel, the schema's name.
LISTEN {schema}
