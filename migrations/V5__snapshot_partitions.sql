-- One table, and so one primary-key index, per report and window.
--
-- A rebuild inserts its rows in key order. In one index shared by every report and window, a
-- rebuild's keys land between other reports' keys, in the middle of the index, and a B-tree
-- leaf page that splits anywhere but at the right edge splits half and half: each page the
-- rebuild fills ends half full. Measured on a year of top-entities rows, that is an index
-- twice the size it needs, twice the page splits, most of the write-ahead log, and about a
-- third of the rebuild's time. With a partition per report and window, a tenant's rebuild of
-- its newest days lands at the right edge of its partition whenever no later tenant has rows
-- there (always, with one tenant), where pages split 90/10.
--
-- The parent keeps the columns, checks and primary key of V4, so every statement reads and
-- writes `metric_snapshots` as before; PostgreSQL routes each row to its partition and prunes
-- the others from reads. Rows of any other report go to a default partition (which shares one
-- index again): a new report gets its partitions in the migration that adds it, before it has
-- rows. A new window needs the window CHECK widened and a sub-partition in every report.
--
-- The rows are copied inside this migration's transaction, with the old table locked: reads
-- wait for it (about 7 s for 1.26 million rows on the development machine). It gives up after
-- 5 s of waiting for the lock (a running rebuild holds it) rather than stalling every read
-- behind it; run `pg-analytics migrate` again when the rebuild is done.
SET LOCAL lock_timeout = '5s';

ALTER TABLE metric_snapshots RENAME TO metric_snapshots_v4;
ALTER TABLE metric_snapshots_v4 RENAME CONSTRAINT metric_snapshots_pkey TO metric_snapshots_v4_pkey;
ALTER TABLE metric_snapshots_v4 RENAME CONSTRAINT metric_snapshots_check TO metric_snapshots_v4_check;
ALTER TABLE metric_snapshots_v4 RENAME CONSTRAINT metric_snapshots_window_name_check TO metric_snapshots_v4_window_name_check;

CREATE TABLE metric_snapshots (
    tenant_id        BIGINT NOT NULL,
    report_slug      TEXT COLLATE "C" NOT NULL,
    window_name      TEXT COLLATE "C" NOT NULL CHECK (window_name IN ('day', 'week')),
    bucket_start     DATE NOT NULL,
    dimension_key    TEXT COLLATE "C" NOT NULL,
    dimension_value  TEXT COLLATE "C" NOT NULL,
    metric_name      TEXT COLLATE "C" NOT NULL,
    metric_value     BIGINT NOT NULL,
    computed_at      TIMESTAMPTZ NOT NULL,
    run_id           UUID,
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    CHECK (window_name <> 'week' OR EXTRACT(ISODOW FROM bucket_start) = 1),
    PRIMARY KEY (tenant_id, report_slug, window_name, bucket_start, dimension_key, dimension_value, metric_name)
) PARTITION BY LIST (report_slug);

CREATE TABLE metric_snapshots_volume_by_period PARTITION OF metric_snapshots
    FOR VALUES IN ('volume-by-period') PARTITION BY LIST (window_name);
CREATE TABLE metric_snapshots_status_counts PARTITION OF metric_snapshots
    FOR VALUES IN ('status-counts') PARTITION BY LIST (window_name);
CREATE TABLE metric_snapshots_top_entities PARTITION OF metric_snapshots
    FOR VALUES IN ('top-entities') PARTITION BY LIST (window_name);

CREATE TABLE metric_snapshots_volume_by_period_day PARTITION OF metric_snapshots_volume_by_period FOR VALUES IN ('day');
CREATE TABLE metric_snapshots_volume_by_period_week PARTITION OF metric_snapshots_volume_by_period FOR VALUES IN ('week');
CREATE TABLE metric_snapshots_status_counts_day PARTITION OF metric_snapshots_status_counts FOR VALUES IN ('day');
CREATE TABLE metric_snapshots_status_counts_week PARTITION OF metric_snapshots_status_counts FOR VALUES IN ('week');
CREATE TABLE metric_snapshots_top_entities_day PARTITION OF metric_snapshots_top_entities FOR VALUES IN ('day');
CREATE TABLE metric_snapshots_top_entities_week PARTITION OF metric_snapshots_top_entities FOR VALUES IN ('week');
CREATE TABLE metric_snapshots_other PARTITION OF metric_snapshots DEFAULT;

INSERT INTO metric_snapshots
    SELECT tenant_id, report_slug, window_name, bucket_start, dimension_key, dimension_value, metric_name, metric_value, computed_at, run_id, created_at
    FROM metric_snapshots_v4
    ORDER BY tenant_id, report_slug, window_name, bucket_start, dimension_key, dimension_value, metric_name;

DROP TABLE metric_snapshots_v4;

-- Statistics now, rather than whenever autovacuum comes to the new partitions.
ANALYZE metric_snapshots;
