-- One table's or index's size right after the fill.
INSERT INTO {schema}.bench_scale_weights (name, "table", is_index, bytes)
VALUES ($1, $2, $3, $4)
