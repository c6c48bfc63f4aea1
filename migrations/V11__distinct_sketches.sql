-- Distinct measures (unique users and the like) keep, per snapshot row, a HyperLogLog sketch of
-- the values they count: PostgreSQL's hll extension builds them in the rebuild's aggregation
-- (hll_add_agg) and merges them in reads (hll_union_agg), so a read over any range and
-- grouping merges sketches instead of reading events. The service reads, writes and estimates
-- the same bytes (see crates/domain/src/sketch.rs).
--
-- sketches[i] is the sketch of the i-th measure when that measure is a distinct one, null
-- otherwise; the column is null for rollups without distinct measures. measure_values[i] is
-- null exactly where sketches[i] holds the measure (a distinct count is its sketch's estimate,
-- made by the service, never stored). The extension is not
-- a trusted one: creating it takes a superuser, or a database where an administrator created
-- it first (then this does nothing).

CREATE EXTENSION IF NOT EXISTS hll;

ALTER TABLE rollup_snapshots ADD COLUMN sketches BYTEA[];
ALTER TABLE rollup_snapshots DROP CONSTRAINT rollup_snapshots_measure_values_check;
-- NOT VALID: the rows already stored are not scanned (under the table's exclusive lock) to be
-- checked, since the constraint it replaces held them to null-free totals without sketches,
-- which this one allows; new and updated rows are checked.
ALTER TABLE rollup_snapshots ADD CONSTRAINT rollup_snapshots_measures_check CHECK (
    cardinality(measure_values) BETWEEN 1 AND 4
    AND CASE
        WHEN sketches IS NULL THEN array_position(measure_values, NULL) IS NULL
        ELSE cardinality(sketches) = cardinality(measure_values)
             AND (cardinality(measure_values) < 1 OR (measure_values[1] IS NULL) <> (sketches[1] IS NULL))
             AND (cardinality(measure_values) < 2 OR (measure_values[2] IS NULL) <> (sketches[2] IS NULL))
             AND (cardinality(measure_values) < 3 OR (measure_values[3] IS NULL) <> (sketches[3] IS NULL))
             AND (cardinality(measure_values) < 4 OR (measure_values[4] IS NULL) <> (sketches[4] IS NULL))
    END) NOT VALID;
