-- What the scale suite wrote into its filled store: present once the fill
-- is complete, so that a later run reuses the store. The marks are global
-- positions as `commit/sequence`; highest_row is the highest `position`
-- the fill wrote (what lies above it, a run's measurements wrote).
CREATE TABLE {schema}.bench_scale_fill (
    format      integer          NOT NULL,
    blocks      bigint           NOT NULL,
    events      bigint           NOT NULL,
    middle      text             NOT NULL,
    before_tail text             NOT NULL,
    last        text             NOT NULL,
    highest_row bigint           NOT NULL,
    fill_secs   double precision NOT NULL,
    filled_at   timestamptz      NOT NULL DEFAULT now()
)
