-- The built-in reports are rollups like any other: their snapshot rows move to
-- rollup_snapshots (the dimension value and the count become one-element arrays) and
-- metric_snapshots, with its partitions, goes. A row keeps its bucket, its computed_at and the
-- run that wrote it. Rows written before runs were recorded (no run_id) are not moved: a
-- recompute of their range writes them again.

INSERT INTO rollup_snapshots (tenant_id, report_slug, window_name, bucket_start, dimension_values,
                              measure_values, computed_at, run_id)
SELECT tenant_id, report_slug, window_name, bucket_start, ARRAY[dimension_value],
       ARRAY[metric_value], computed_at, run_id
FROM metric_snapshots
WHERE metric_name = 'event_count'
  AND run_id IS NOT NULL
  AND report_slug IN ('volume-by-period', 'status-counts', 'top-entities')
ON CONFLICT DO NOTHING;

DROP TABLE metric_snapshots;

ANALYZE rollup_snapshots;
