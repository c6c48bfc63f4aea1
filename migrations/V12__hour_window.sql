-- The hour window: rollups may keep buckets of one UTC hour. An hour bucket's row keeps the
-- day it lies in as bucket_start and its hour of day as bucket_hour (0 for every other
-- window), so everything that selects buckets by a range of days (reads, the deletes of a
-- rebuild, dirty days) selects whole hour buckets unchanged, through the same index.
--
-- The column's default is a constant, so adding it rewrites nothing. The checks that name the
-- windows are replaced; the snapshot table's new checks are NOT VALID (its stored rows, all of
-- day, week or month with hour 0, are not scanned under an exclusive lock to prove it).

ALTER TABLE rollup_snapshots ADD COLUMN bucket_hour SMALLINT NOT NULL DEFAULT 0;

ALTER TABLE rollup_snapshots DROP CONSTRAINT rollup_snapshots_window_name_check;
ALTER TABLE rollup_snapshots ADD CONSTRAINT rollup_snapshots_window_name_check
    CHECK (window_name IN ('hour', 'day', 'week', 'month')) NOT VALID;
ALTER TABLE rollup_snapshots ADD CONSTRAINT rollup_snapshots_bucket_hour_check
    CHECK (bucket_hour BETWEEN 0 AND 23 AND (window_name = 'hour' OR bucket_hour = 0)) NOT VALID;

ALTER TABLE recompute_runs DROP CONSTRAINT recompute_runs_window_name_check;
ALTER TABLE recompute_runs ADD CONSTRAINT recompute_runs_window_name_check
    CHECK (window_name IN ('hour', 'day', 'week', 'month'));

-- Every tenant now has the standard rollups `traffic`, `top-paths` and `events-by-name`,
-- defined by the binary (seeds/rollups/). A report a tenant defined under one of those slugs
-- would be hidden by it, and its rows read as the standard rollup's: it is renamed
-- `<slug>-custom`, with its snapshot rows and its runs, so both stay readable.
UPDATE rollup_snapshots s
SET report_slug = s.report_slug || '-custom'
FROM rollup_definitions d
WHERE d.tenant_id = s.tenant_id AND d.slug = s.report_slug
  AND d.slug IN ('traffic', 'top-paths', 'events-by-name');

UPDATE recompute_runs r
SET report_slug = r.report_slug || '-custom'
FROM rollup_definitions d
WHERE d.tenant_id = r.tenant_id AND d.slug = r.report_slug
  AND d.slug IN ('traffic', 'top-paths', 'events-by-name');

UPDATE rollup_definitions
SET slug = slug || '-custom',
    definition = jsonb_set(definition, '{slug}', to_jsonb(slug || '-custom'))
WHERE slug IN ('traffic', 'top-paths', 'events-by-name');
