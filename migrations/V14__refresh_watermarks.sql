-- Delta refresh. A refresh adds the events committed since a rollup's window was last brought
-- up to date to the rows it already stores, instead of rebuilding whole dirty buckets from
-- every event they hold: its cost follows the new events, not the size of their buckets.
--
-- 1. Each event records the transaction that stored it. A column default, so no writer
--    changes; the rows stored before this migration keep a null (every watermark is taken
--    after them, so they are counted already). The index finds a tenant's events stored since
--    a watermark; it is partial because a condition on the column implies it is not null.
-- 2. A window's watermark is the snapshot its last run read the events in, when after that
--    run every kept bucket counts exactly the events visible in that snapshot: the run rebuilt
--    or brought up to date every bucket marked dirty in it (a bucket without a mark counts
--    every visible event, since a mark is written in the transaction that stores the event).
--    The events of a delta are those visible in the refresh's snapshot and not in the
--    watermark's: pg_visible_in_snapshot decides by the storing transaction, whatever the
--    order in which transactions committed, so no event is counted twice or missed.
--
-- The xids are this cluster's: a logical restore into another cluster must empty
-- refresh_watermarks and set ingest_xid to null (docs/operations.md), after which the next
-- run of each window rebuilds its dirty buckets and takes a new watermark.

ALTER TABLE analytics_events ADD COLUMN ingest_xid xid8;
ALTER TABLE analytics_events ALTER COLUMN ingest_xid SET DEFAULT pg_current_xact_id();
CREATE INDEX analytics_events_tenant_xid
    ON analytics_events (tenant_id, ingest_xid) WHERE ingest_xid IS NOT NULL;

CREATE TABLE refresh_watermarks (
    tenant_id    BIGINT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    report_slug  TEXT COLLATE "C" NOT NULL,
    window_name  TEXT COLLATE "C" NOT NULL CHECK (window_name IN ('hour', 'day', 'week', 'month')),
    counted      pg_snapshot NOT NULL,
    run_id       UUID NOT NULL,
    PRIMARY KEY (tenant_id, report_slug, window_name)
);
