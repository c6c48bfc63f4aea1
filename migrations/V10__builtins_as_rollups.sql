-- Two changes to rollup_snapshots, which now holds the rows of every report:
--
-- 1. The dimension values become three text columns (null where the rollup has fewer
--    dimensions, or where an event had no value) instead of one text array. The natural key
--    is a unique index over them with NULLS NOT DISTINCT (PostgreSQL 15): a btree over an
--    array compares arrays element by element through the array support functions, which
--    made a write of a high-cardinality rollup (a top-N by entity: 865,000 day rows from
--    1,000,000 events) three times slower than over plain text columns.
-- 2. The built-in reports are rollups like any other: their snapshot rows move here (the
--    dimension value into d1, the count into a one-element measure array) and
--    metric_snapshots, with its partitions, goes. A row keeps its bucket, its computed_at and
--    the run that wrote it. Rows written before runs were recorded (no run_id) are not moved:
--    a recompute of their range writes them again.

ALTER TABLE rollup_snapshots
    ADD COLUMN d1 TEXT COLLATE "C",
    ADD COLUMN d2 TEXT COLLATE "C",
    ADD COLUMN d3 TEXT COLLATE "C";
UPDATE rollup_snapshots
SET d1 = dimension_values[1], d2 = dimension_values[2], d3 = dimension_values[3];
ALTER TABLE rollup_snapshots DROP CONSTRAINT rollup_snapshots_pkey;
ALTER TABLE rollup_snapshots DROP COLUMN dimension_values;
CREATE UNIQUE INDEX rollup_snapshots_key
    ON rollup_snapshots (tenant_id, report_slug, window_name, bucket_start, d1, d2, d3)
    NULLS NOT DISTINCT;

INSERT INTO rollup_snapshots (tenant_id, report_slug, window_name, bucket_start, d1,
                              measure_values, computed_at, run_id)
SELECT tenant_id, report_slug, window_name, bucket_start, dimension_value, ARRAY[metric_value],
       computed_at, run_id
FROM metric_snapshots
WHERE metric_name = 'event_count'
  AND run_id IS NOT NULL
  AND report_slug IN ('volume-by-period', 'status-counts', 'top-entities')
ON CONFLICT DO NOTHING;

DROP TABLE metric_snapshots;

ANALYZE rollup_snapshots;
