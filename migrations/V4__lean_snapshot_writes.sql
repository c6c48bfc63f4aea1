-- A rebuild rewrites every snapshot row of its range, so each index and each foreign-key check
-- on metric_snapshots is paid once per row written: with top-entities that is one row per entity
-- and day. Only what reads need stays.
--
-- * The natural key becomes the primary key. The surrogate id was read by nothing, and its
--   index was a second write per row.
-- * No foreign keys. Rows are written only by the rebuild, which takes the tenant, the report
--   and the run from the run row it is completing; tenants, reports and runs are never deleted.
--   Each check was a lookup per inserted row.
-- * No index on run_id. The rows a run wrote lie inside its scope (tenant, report, window and
--   range), which the primary key serves: filter those on run_id.
-- * The key's text columns compare bytewise (COLLATE "C"): every index insertion and every
--   sort of a rebuild compares them many times, and reads already order text bytewise.
ALTER TABLE metric_snapshots
    DROP CONSTRAINT metric_snapshots_tenant_id_fkey,
    DROP CONSTRAINT metric_snapshots_report_slug_fkey,
    DROP CONSTRAINT metric_snapshots_run_id_fkey;

DROP INDEX metric_snapshots_run;

ALTER TABLE metric_snapshots DROP CONSTRAINT metric_snapshots_pkey;
ALTER TABLE metric_snapshots DROP COLUMN id;
ALTER TABLE metric_snapshots
    DROP CONSTRAINT metric_snapshots_tenant_id_report_slug_window_name_bucket_s_key,
    ALTER COLUMN report_slug TYPE TEXT COLLATE "C",
    ALTER COLUMN window_name TYPE TEXT COLLATE "C",
    ALTER COLUMN dimension_key TYPE TEXT COLLATE "C",
    ALTER COLUMN dimension_value TYPE TEXT COLLATE "C",
    ALTER COLUMN metric_name TYPE TEXT COLLATE "C";
ALTER TABLE metric_snapshots
    ADD CONSTRAINT metric_snapshots_pkey
        PRIMARY KEY (tenant_id, report_slug, window_name, bucket_start, dimension_key, dimension_value, metric_name);
