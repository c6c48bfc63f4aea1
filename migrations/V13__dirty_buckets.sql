-- Incremental refresh. A bucket of a tenant's rollup and window whose events changed since it
-- was last built is dirty: it has a row here. Ingestion marks the buckets of every rollup whose
-- filters its new events pass, in the transaction that stores them; a definition change marks
-- every bucket with events; a rebuild clears only the marks it saw in the snapshot it read the
-- events from, so a change committed during a rebuild keeps its bucket dirty.
--
-- `version` comes from a sequence and is taken while the row is locked (on insert, or in the
-- update of a conflicting insert), so a mark changed after a rebuild's snapshot always carries a
-- greater version than the one the rebuild saw, and its `DELETE ... WHERE version <= seen`
-- leaves it. `first_marked_at` is when the oldest change the bucket does not count yet was
-- committed (an upper bound on it: a mark a rebuild could not clear, because it changed during
-- the rebuild, moves up to the time the rebuild began).
-- An hour bucket's mark is its day's: a rebuild replaces the hours of whole days.

CREATE SEQUENCE dirty_bucket_versions AS BIGINT;

CREATE TABLE dirty_buckets (
    tenant_id        BIGINT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    report_slug      TEXT COLLATE "C" NOT NULL,
    window_name      TEXT COLLATE "C" NOT NULL CHECK (window_name IN ('hour', 'day', 'week', 'month')),
    bucket_start     DATE NOT NULL,
    version          BIGINT NOT NULL,
    first_marked_at  TIMESTAMPTZ NOT NULL,
    -- Why the bucket is dirty: new or late events, or a change of the rollup's definition.
    reason           TEXT NOT NULL CHECK (reason IN ('events', 'definition')),
    PRIMARY KEY (tenant_id, report_slug, window_name, bucket_start)
);

-- The scheduler's scan: the oldest mark of every tenant's rollup and window.
CREATE INDEX dirty_buckets_oldest ON dirty_buckets (first_marked_at);

-- Runs rebuild everything in their range (`full`) or only its dirty buckets (`incremental`).
-- One incremental run per tenant, rollup and window is active at a time, whatever its range,
-- so schedulers of several processes never queue the same refresh twice.
ALTER TABLE recompute_runs
    ADD COLUMN mode TEXT NOT NULL DEFAULT 'full' CHECK (mode IN ('full', 'incremental'));
CREATE UNIQUE INDEX recompute_runs_one_active_refresh
    ON recompute_runs (tenant_id, report_slug, window_name)
    WHERE status IN ('pending', 'running') AND mode = 'incremental';

-- stale_days now lists every day a tenant has events on, which a definition change marks: the
-- days of events written before it (by the demo seed) are added as changed now.
INSERT INTO stale_days (tenant_id, day, changed_at)
SELECT DISTINCT tenant_id, (occurred_at AT TIME ZONE 'UTC')::date, now()
FROM analytics_events
ON CONFLICT (tenant_id, day) DO NOTHING;

-- Buckets built before this migration whose days changed after they were computed are dirty.
INSERT INTO dirty_buckets (tenant_id, report_slug, window_name, bucket_start, version, first_marked_at, reason)
SELECT b.tenant_id, b.report_slug, b.window_name, b.bucket_start, nextval('dirty_bucket_versions'),
       b.changed, 'events'
FROM (
    SELECT s.tenant_id, s.report_slug, s.window_name, s.bucket_start, min(d.changed_at) AS changed
    FROM (
        SELECT tenant_id, report_slug, window_name, bucket_start, max(computed_at) AS computed_at
        FROM rollup_snapshots
        GROUP BY tenant_id, report_slug, window_name, bucket_start
    ) s
    JOIN stale_days d
      ON d.tenant_id = s.tenant_id
     AND d.changed_at > s.computed_at
     AND d.day >= s.bucket_start
     AND d.day < CASE s.window_name
                     WHEN 'week' THEN s.bucket_start + 7
                     WHEN 'month' THEN (s.bucket_start + interval '1 month')::date
                     ELSE s.bucket_start + 1
                 END
    GROUP BY s.tenant_id, s.report_slug, s.window_name, s.bucket_start
) b;
