-- What the filled store weighed right after its fill (before any run's
-- measurements wrote into it and left free pages behind): one row per
-- table and index, as weights.sql finds them.
CREATE TABLE {schema}.bench_scale_weights (
    name     text    NOT NULL,
    "table"  text    NOT NULL,
    is_index boolean NOT NULL,
    bytes    bigint  NOT NULL
)
