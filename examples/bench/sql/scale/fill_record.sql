-- Records a complete fill.
INSERT INTO {schema}.bench_scale_fill (format, blocks, events, middle, before_tail, last, highest_row,
                                       fill_secs)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
