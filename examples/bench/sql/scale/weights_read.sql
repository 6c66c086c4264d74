-- The sizes recorded right after the fill, in the order of weights.sql.
SELECT name, "table", is_index, bytes
  FROM {schema}.bench_scale_weights
 ORDER BY "table", is_index, name
