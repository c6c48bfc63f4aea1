-- A run rebuilds a built-in report or a tenant's rollup, whose definitions live per tenant in
-- rollup_definitions: the slug no longer names a row of report_definitions. Runs and their
-- audit outlive a deleted rollup. Rollups may also be built by month.

ALTER TABLE recompute_runs DROP CONSTRAINT recompute_runs_report_slug_fkey;
ALTER TABLE recompute_runs DROP CONSTRAINT recompute_runs_window_name_check;
ALTER TABLE recompute_runs
    ADD CONSTRAINT recompute_runs_window_name_check CHECK (window_name IN ('day', 'week', 'month'));
ALTER TABLE recompute_runs
    ADD CONSTRAINT recompute_runs_report_slug_check CHECK (report_slug ~ '^[a-z0-9]([a-z0-9-]{0,62}[a-z0-9])?$');
