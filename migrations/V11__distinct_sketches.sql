-- Distinct measures (unique users and the like) keep, per snapshot row, a HyperLogLog sketch of
-- the values they count: PostgreSQL's hll extension builds them in the rebuild's aggregation
-- (hll_add_agg) and merges them in reads (hll_union_agg), so a read over any range and
-- grouping merges sketches instead of reading events. The service reads, writes and estimates
-- the same bytes (see crates/domain/src/sketch.rs).
--
-- sketches[i] is the sketch of the i-th measure when that measure is a distinct one, null
-- otherwise; the column is null for rollups without distinct measures. The extension is not
-- a trusted one: creating it takes a superuser, or a database where an administrator created
-- it first (then this does nothing).

CREATE EXTENSION IF NOT EXISTS hll;

ALTER TABLE rollup_snapshots ADD COLUMN sketches BYTEA[];
