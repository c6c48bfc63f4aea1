-- Snapshot rows of rollups (reports defined as data): one row per bucket and combination of
-- dimension values, holding every measure of the rollup in definition order. A null dimension
-- value (an event without the field) is an element of the array, so it is part of the key.
-- Like metric_snapshots, no foreign keys: rows are written in bulk by rebuilds that already
-- hold the tenant's scope, and deleted with their report.

CREATE TABLE rollup_snapshots (
    tenant_id        BIGINT NOT NULL,
    report_slug      TEXT COLLATE "C" NOT NULL,
    window_name      TEXT COLLATE "C" NOT NULL CHECK (window_name IN ('day', 'week', 'month')),
    bucket_start     DATE NOT NULL,
    dimension_values TEXT[] COLLATE "C" NOT NULL CHECK (cardinality(dimension_values) <= 3),
    measure_values   BIGINT[] NOT NULL
                     CHECK (cardinality(measure_values) BETWEEN 1 AND 4 AND array_position(measure_values, NULL) IS NULL),
    computed_at      TIMESTAMPTZ NOT NULL,
    run_id           UUID NOT NULL,
    PRIMARY KEY (tenant_id, report_slug, window_name, bucket_start, dimension_values),
    CHECK (window_name <> 'week' OR extract(isodow FROM bucket_start) = 1),
    CHECK (window_name <> 'month' OR extract(day FROM bucket_start) = 1)
);
