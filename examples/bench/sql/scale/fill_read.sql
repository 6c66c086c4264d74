-- The record of a complete fill of this format, if the store has one.
SELECT blocks, events, middle, before_tail, last, fill_secs, filled_at::text, highest_row
  FROM {schema}.bench_scale_fill
 WHERE format = $1
