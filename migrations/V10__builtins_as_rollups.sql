-- Two changes to rollup_snapshots, which now holds the rows of every report:
--
-- 1. The dimension values become three text columns (null past the rollup's dimensions, or
--    where an event had no value) instead of one text array, and the index is on the
--    bucket's identity alone: (tenant_id, report_slug, window_name, bucket_start). Measured
--    on the 865,000 day rows of top-entities over 1,000,000 events, written in bucket order:
--    * a unique key over the text array took 11.3 s to write: a btree over an array compares
--      arrays element by element through the array support functions;
--    * a unique key over the three text columns (NULLS NOT DISTINCT) took 2.4 s into an
--      empty table but 9.5 s to write again after deleting the same rows in the same
--      transaction, which is what every rebuild does: each insertion's uniqueness check meets
--      the deleted row of its key and reads it from the heap;
--    * this index took 2.2 s and 2.5 s (plus 0.6 s for the delete), and is 12 MB against
--      100 MB: its equal keys are deduplicated.
--    A bucket's rows are unique by construction, not by constraint: a rebuild holds the lock
--    of its tenant, report and window, deletes the rows of its buckets and writes one row per
--    group of a GROUP BY, in one transaction. Reads select a tenant's report, window and
--    buckets, which is what the index serves.
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
CREATE INDEX rollup_snapshots_bucket
    ON rollup_snapshots (tenant_id, report_slug, window_name, bucket_start);

INSERT INTO rollup_snapshots (tenant_id, report_slug, window_name, bucket_start, d1,
                              measure_values, computed_at, run_id)
SELECT tenant_id, report_slug, window_name, bucket_start, dimension_value, ARRAY[metric_value],
       computed_at, run_id
FROM metric_snapshots
WHERE metric_name = 'event_count'
  AND run_id IS NOT NULL
  AND report_slug IN ('volume-by-period', 'status-counts', 'top-entities');

DROP TABLE metric_snapshots;

ANALYZE rollup_snapshots;
