//! The shared contract suite: the promises every adapter of a port must keep.
//!
//! Each port has a module here, and each promise of the port is a public async function of that
//! module, named as the promise in plain words
//! (`tenants::a_second_create_with_the_same_slug_is_already_exists`). A promise takes the
//! port's `Fixture`: the port (or the ports it works with) as trait objects, the tenants it may
//! write for and whatever else it needs (a queue's capacity, the instant its clock reads). It
//! expects a fresh store, with nothing written for those tenants, and makes every write it
//! depends on itself: where one promise builds on the state another leaves, it replays the
//! steps that lead there. So the promises run in any order, each against adapters of its own,
//! and a broken one hides none of the others.
//!
//! An adapter's test file runs the suite with [`contract_tests!`](crate::contract_tests),
//! once per port it implements, which expands to one test per promise, named
//! `<port>::<promise>` (`tenant_store::a_second_create_with_the_same_slug_is_already_exists`).
//! A failure says which adapter broke which promise, then what it did instead. The memory
//! adapter runs every port; the PostgreSQL and Redis adapters run theirs against real servers.
//!
//! Whole-second timestamps are used throughout, so that databases with microsecond precision
//! compare equal.
//!
//! # Errors
//! Every promise fails with what the adapter did instead of keeping it; a setup step that fails
//! fails the promise too.

pub mod api_keys;
pub mod audit;
pub mod cache;
pub mod catalog;
pub mod definitions;
pub mod events;
pub mod freshness;
pub mod ingestion;
pub mod locks;
pub mod queue;
pub mod rollups;
pub mod runs;
pub mod snapshots;
pub mod sources;
pub mod tenants;
pub mod versions;

use std::any::Any;

use anyhow::Context;
pub use anyhow::Result;
use domain::{
    Actor, DateRange, EventStatus, IngestStatus, LockToken, NewEvent, RecomputeRun, ReportSlug,
    SourceSlug, TenantId, Window,
};
use serde_json::json;
use time::{Date, OffsetDateTime, macros::datetime};

use crate::ports::{EventStore, IngestEvent};

/// The fixture of one promise, over adapters of its own, and what must outlive the promise for
/// them to work: a database created for it, a server.
pub struct Fresh<F> {
    fixture: F,
    /// Dropped after the fixture.
    kept: Vec<Box<dyn Any>>,
}

impl<F> Fresh<F> {
    /// `fixture`, with nothing else to keep.
    pub fn new(fixture: F) -> Self {
        Self {
            fixture,
            kept: Vec::new(),
        }
    }

    /// Keeps `guard` alive until the promise has run.
    #[must_use]
    pub fn keeping(mut self, guard: impl Any) -> Self {
        self.kept.push(Box::new(guard));
        self
    }

    pub fn fixture(&self) -> &F {
        &self.fixture
    }
}

/// Runs `promise` (named `name`) of `port` against what `fresh` builds for `adapter`, skipping
/// it when `fresh` builds nothing (a server the tests may run without is unreachable).
///
/// # Errors
/// When `fresh` fails or the promise is broken, with the adapter, the port and the promise in
/// words ("memory tenant_store: a second create with the same slug is already exists"), caused
/// by what went wrong.
pub async fn check<F>(
    adapter: &str,
    port: &str,
    name: &str,
    fresh: impl Future<Output = Result<Option<Fresh<F>>>>,
    promise: impl AsyncFnOnce(&F) -> Result<()>,
) -> Result<()> {
    let broken = || format!("{adapter} {port}: {}", name.replace('_', " "));
    let Some(fresh) = fresh
        .await
        .with_context(|| format!("{}: building fresh adapters", broken()))?
    else {
        return Ok(());
    };
    promise(fresh.fixture()).await.with_context(broken)
}

fn range(from: Date, to: Date) -> Result<DateRange> {
    DateRange::new(from, to).context("test range")
}

fn name(raw: &str) -> Result<domain::DisplayName> {
    Ok(domain::DisplayName::parse("name", raw)?)
}

fn text(raw: &str) -> Result<domain::Description> {
    Ok(domain::Description::parse("description", raw)?)
}

fn slug(raw: &str) -> Result<ReportSlug> {
    ReportSlug::parse(raw).context("test slug")
}

fn event(
    id: &str,
    source: &str,
    entity: &str,
    status: EventStatus,
    at: OffsetDateTime,
) -> Result<NewEvent> {
    Ok(NewEvent {
        event_id: id.to_owned(),
        event_name: NewEvent::DEFAULT_NAME.to_owned(),
        user_id: None,
        source: SourceSlug::parse("source", source)?,
        entity_id: Some(entity.to_owned()),
        status: Some(status),
        processing_ms: 120,
        amount_cents: 1_500,
        occurred_at: at,
        properties: json!({ "region": "eu-west" }),
    })
}

/// Eight events around the week starting Monday 2026-03-02.
fn fixture_events() -> Result<Vec<NewEvent>> {
    use EventStatus::{Failed, Pending, Success};
    Ok(vec![
        event(
            "e1",
            "stripe",
            "entity-a",
            Success,
            datetime!(2026-03-02 10:00 UTC),
        )?,
        event(
            "e2",
            "stripe",
            "entity-b",
            Failed,
            datetime!(2026-03-02 23:59:59 UTC),
        )?,
        event(
            "e3",
            "adyen",
            "entity-a",
            Success,
            datetime!(2026-03-03 00:00 UTC),
        )?,
        event(
            "e4",
            "paypal",
            "entity-a",
            Pending,
            datetime!(2026-03-08 12:00 UTC),
        )?,
        event(
            "e5",
            "adyen",
            "entity-c",
            Success,
            datetime!(2026-03-09 08:00 UTC),
        )?,
        // 22:00 at UTC-5 is 03:00 UTC the next day: buckets follow the UTC date.
        event(
            "e6",
            "stripe",
            "entity-b",
            Success,
            datetime!(2026-03-01 22:00 -5),
        )?,
        event(
            "e7",
            "stripe",
            "entity-c",
            Failed,
            datetime!(2026-02-28 12:00 UTC),
        )?,
        event(
            "e8",
            "adyen",
            "entity-a",
            Success,
            datetime!(2026-03-02 12:00 UTC),
        )?,
    ])
}

/// Stores `list` for `tenant` the way production writes events, through ingestion; how many
/// were new.
/// When [`store`] stores events: the change it records for their days.
const STORED_AT: OffsetDateTime = datetime!(2026-03-10 00:00 UTC);

async fn store(events: &dyn EventStore, tenant: TenantId, list: &[NewEvent]) -> Result<u64> {
    store_at(events, tenant, list, STORED_AT).await
}

/// Stores `list` for `tenant` as ingested at `at`; how many were new.
async fn store_at(
    events: &dyn EventStore,
    tenant: TenantId,
    list: &[NewEvent],
    at: OffsetDateTime,
) -> Result<u64> {
    let items = list
        .iter()
        .map(|event| IngestEvent {
            fingerprint: crate::ingest::fingerprint(event),
            event: event.clone(),
        })
        .collect();
    let outcomes = events.ingest(tenant, items, at).await?;
    Ok(outcomes
        .iter()
        .filter(|outcome| outcome.status == IngestStatus::Created)
        .count() as u64)
}

/// A pending run of `report` by `window` for the single day `from`, requested `at`.
fn run_of(
    tenant: TenantId,
    report: &str,
    window: Window,
    from: Date,
    at: OffsetDateTime,
) -> Result<RecomputeRun> {
    Ok(RecomputeRun::pending(
        tenant,
        slug(report)?,
        window,
        range(from, from)?,
        Actor::parse("contract")?,
        at,
        Some(LockToken::generate()),
    ))
}

/// One test per promise of each port an adapter implements, each against adapters of its own.
///
/// ```
/// use std::sync::Arc;
///
/// use application::contract::{Fresh, cache, tenants};
/// use memory_adapter::{InMemoryAdapters, ManualClock};
///
/// /// The fixture `build` makes of a fresh set of adapters.
/// async fn fresh<F>(
///     build: impl FnOnce(InMemoryAdapters) -> F,
/// ) -> anyhow::Result<Option<Fresh<F>>> {
///     let clock = Arc::new(ManualClock::new(time::OffsetDateTime::UNIX_EPOCH));
///     Ok(Some(Fresh::new(build(InMemoryAdapters::new(clock, 8)))))
/// }
///
/// application::contract_tests! {
///     adapter = "memory";
///     tenant_store => fresh(|a| tenants::Fixture {
///         tenants: a.tenants,
///         sources: a.sources,
///     });
///     response_cache => fresh(|a| cache::Fixture {
///         cache: a.cache,
///         tenant: domain::TenantId::DEFAULT,
///     });
/// }
/// # fn main() {}
/// ```
///
/// `adapter` names the adapter in failure messages. Each port (named as below) is given an
/// expression evaluated afresh in every test: a future of
/// `anyhow::Result<Option<Fresh<port's Fixture>>>`, which builds fresh adapters (creating a
/// database of their own, say, kept alive with [`Fresh::keeping`]) or `None` to skip the test
/// (no server to run against). It is evaluated inside a module of the invoking one (`use
/// super::*`), so it may call the test file's helpers.
///
/// For each port this expands to a module named after it with one `#[tokio::test]` per
/// promise, named after the promise, which runs the promise through [`check`]. The invoking
/// crate needs `tokio` (with `macros` and a runtime) among its dev-dependencies. To run a port
/// twice in one file (two set-ups of one adapter), invoke the macro again inside a module.
///
/// The ports and their modules: `report_catalog` ([`catalog`]), `event_store` ([`events`]),
/// `snapshot_store` ([`snapshots`]), `rollup_store` ([`rollups`]), `dirty_buckets` ([`freshness`]), `rollup_definitions` ([`definitions`]), `run_store` ([`runs`]), `run_queue` ([`queue`]),
/// `audit_log` ([`audit`]), `response_cache` ([`cache`]), `cache_versions` ([`versions`]),
/// `scope_lock` ([`locks`]), `event_ingestion` ([`ingestion`]), `tenant_store` ([`tenants`]),
/// `source_store` ([`sources`]), `api_key_store` ([`api_keys`]).
#[macro_export]
macro_rules! contract_tests {
    (adapter = $adapter:expr; $($port:ident => $fresh:expr;)+) => {
        $( $crate::contract_tests!(@port $port [$adapter] [$fresh]); )+
    };
    // Each port's promises, in the order of its module (a unit test checks the lists).
    (@port report_catalog $($rest:tt)*) => {
        $crate::contract_tests! { @promises report_catalog catalog [
            the_reference_reports_are_listed_by_slug,
            the_total_counts_every_match,
            reports_sort_by_cache_ttl_descending,
            search_is_a_case_insensitive_substring,
            search_matches_names_too,
            a_page_still_reports_the_full_total,
            limit_one_offset_one_is_the_second_report,
            every_reference_report_matches_its_reference_definition,
            volume_by_period_is_read_by_slug_with_its_kind_and_default_window,
            volume_by_period_allows_days_and_weeks,
            a_window_keeps_its_retention_and_refresh_interval,
            an_unknown_slug_is_none,
        ] $($rest)* }
    };
    (@port event_store $($rest:tt)*) => {
        $crate::contract_tests! { @promises event_store events [
            every_new_event_is_stored,
            a_known_event_id_is_not_stored_twice,
            event_ids_are_unique_per_tenant_not_globally,
            tenants_are_counted_apart,
            demo_events_are_new,
            demo_seeding_skips_the_ids_it_already_wrote,
            clear_reports_what_it_removed,
            clear_empties_the_tenant,
            clear_leaves_other_tenants_alone,
        ] $($rest)* }
    };
    (@port snapshot_store $($rest:tt)*) => {
        $crate::contract_tests! { @promises snapshot_store snapshots [
            no_rows_before_a_rebuild,
            a_day_rebuild_stores_one_row_per_day_and_source,
            volume_is_counted_per_utc_day,
            the_total_counts_every_row_of_the_range,
            last_refreshed_at_is_the_newest_computed_at,
            a_read_carries_the_oldest_change_its_buckets_do_not_count,
            the_source_breakdown_is_by_date_then_source,
            a_source_filter_keeps_only_that_source,
            rows_reads_every_stored_row_of_the_range,
            a_bucket_outside_the_rebuilt_range_keeps_its_run,
            every_rebuilt_row_points_to_its_run,
            a_second_rebuild_replaces_the_rows_of_its_buckets,
            statuses_are_ordered_by_count_descending_then_status,
            statuses_per_day_are_by_date_then_status,
            a_status_filter_keeps_only_that_status,
            entities_are_ranked_by_count_descending_then_entity,
            limit_and_offset_apply_to_the_ranked_rows,
            a_week_rebuild_stores_one_row_per_week_and_source,
            weekly_totals_count_the_events_of_each_week,
            a_week_whose_monday_is_before_the_range_is_left_out,
            day_and_week_snapshots_are_kept_apart,
            rows_of_one_tenant_are_invisible_to_another,
            another_tenants_rebuild_reads_only_its_events,
            another_tenants_rebuild_leaves_these_rows_alone,
            clear_removes_every_row_of_the_tenant,
            an_event_without_status_or_entity_is_counted_only_where_not_grouped_by_them,
        ] $($rest)* }
    };
    (@port dirty_buckets $($rest:tt)*) => {
        $crate::contract_tests! { @promises dirty_buckets freshness [
            a_late_event_dirties_exactly_its_buckets_in_the_rollups_that_count_it,
            a_definition_dirties_its_buckets_with_events_and_takes_its_marks_when_deleted,
            an_incremental_rebuild_rebuilds_only_the_dirty_buckets_and_equals_a_full_one,
            an_incremental_rebuild_of_clean_buckets_changes_nothing,
            a_read_carries_the_oldest_change_its_buckets_do_not_count,
            dirty_scopes_sum_up_each_rollup_and_window,
            clearing_the_events_clears_their_marks,
            expiry_deletes_only_the_buckets_before_the_cutoff_with_their_marks,
            a_purge_deletes_only_the_events_before_the_cutoff,
            a_refresh_adds_new_distinct_values_as_a_full_rebuild_counts_them,
            a_redefined_rollup_refreshes_its_dirty_buckets_whole,
            a_bucket_left_dirty_outside_a_runs_range_is_rebuilt_by_the_next_refresh,
        ] $($rest)* }
    };
    (@port rollup_definitions $($rest:tt)*) => {
        $crate::contract_tests! { @promises rollup_definitions definitions [
            a_created_definition_reads_back_unchanged,
            a_second_create_with_the_same_slug_is_refused_and_changes_nothing,
            the_limit_counts_the_tenants_own_definitions_only,
            replace_changes_the_definition_and_keeps_created_at,
            replacing_a_definition_the_tenant_lacks_is_not_found,
            delete_removes_that_definition_only,
            the_list_is_the_tenants_own_by_slug,
        ] $($rest)* }
    };
    (@port rollup_store $($rest:tt)*) => {
        $crate::contract_tests! { @promises rollup_store rollups [
            a_rollup_by_two_dimensions_equals_a_direct_aggregation,
            a_required_dimension_leaves_out_the_events_without_a_value_for_it,
            week_buckets_equal_a_direct_aggregation,
            month_buckets_of_three_dimensions_equal_a_direct_aggregation,
            every_grouping_and_order_equals_a_direct_aggregation,
            distinct_counts_merge_to_the_exact_counts_at_every_grouping_and_order,
            distinct_counts_of_windows_rebuilt_together_equal_the_exact_counts,
            hour_buckets_equal_the_exact_counts_alone_or_with_coarser_windows,
            a_merged_read_holds_every_row_with_sketches_that_merge_further,
            a_span_aggregates_exactly_the_events_that_occurred_in_it,
            a_tiled_read_equals_the_day_read_and_falls_back_when_a_coarser_window_lags,
            a_read_over_part_of_the_range_and_one_value_equals_a_direct_aggregation,
            filters_count_only_the_events_that_match_them,
            a_property_sum_equals_a_direct_aggregation_and_counts_what_it_skips,
            a_property_sum_adds_integers_and_skips_every_other_value,
            top_values_are_by_measure_descending_then_bytewise_with_null_last,
            pages_keep_the_total_and_an_empty_page_still_has_it,
            nothing_is_read_before_a_rebuild,
            without_dimensions_each_bucket_with_events_is_one_row,
            a_rebuild_replaces_only_the_buckets_of_its_range,
            windows_rebuilt_together_equal_each_window_rebuilt_alone,
            a_rebuild_naming_a_window_twice_is_refused_and_changes_nothing,
            tenants_windows_and_rollups_are_kept_apart,
            remove_deletes_every_window_of_the_rollup_and_nothing_else,
        ] $($rest)* }
    };
    (@port run_store $($rest:tt)*) => {
        $crate::contract_tests! { @promises run_store runs [
            a_created_run_reads_back_unchanged,
            another_tenant_cannot_see_a_run,
            getting_an_unknown_id_is_none,
            a_second_active_run_of_one_scope_is_refused,
            a_refused_run_is_not_stored,
            one_incremental_run_per_report_and_window_is_active_whatever_its_range,
            a_week_run_of_the_same_days_is_another_scope,
            another_tenants_run_of_the_same_scope_is_another_scope,
            start_claims_a_pending_run,
            a_running_run_cannot_be_claimed_twice,
            another_tenant_cannot_claim_a_run,
            a_running_runs_lease_is_renewed,
            another_tenant_cannot_renew_a_run,
            a_pending_run_has_no_lease_to_renew,
            complete_stores_the_summary,
            a_completed_run_reads_back,
            a_finished_run_is_not_renewed,
            completed_is_final,
            a_finished_scope_accepts_a_new_run,
            a_pending_run_can_fail_with_its_error,
            only_a_pending_run_can_be_abandoned,
            a_pending_run_cannot_complete,
            starting_an_unknown_id_is_not_found,
            the_list_counts_every_run_of_the_tenant,
            runs_are_listed_newest_request_first,
            a_status_filter_keeps_only_that_status,
            a_report_filter_keeps_only_that_report,
            a_page_keeps_the_total,
        ] $($rest)* }
    };
    (@port run_queue $($rest:tt)*) => {
        $crate::contract_tests! { @promises run_queue queue [
            a_queue_takes_runs_up_to_its_capacity,
            a_full_queue_refuses_a_run,
            runs_are_claimed_first_in_first_out,
            claiming_starts_the_run,
            a_run_claimed_within_its_lease_is_not_recovered,
            a_run_failed_while_queued_is_skipped,
            a_closed_queue_hands_out_nothing,
            a_closed_queue_accepts_nothing,
            the_backlog_counts_the_pending_runs_and_dates_the_oldest,
            the_pending_runs_of_a_reports_other_windows_are_claimed_with_it,
            a_pending_run_whose_range_is_far_from_the_claimed_ones_is_left,
            a_pending_run_not_queued_yet_is_claimed_with_its_reports_run,
        ] $($rest)* }
    };
    (@port audit_log $($rest:tt)*) => {
        $crate::contract_tests! { @promises audit_log audit [
            ids_increase,
            metadata_is_kept_as_json,
            fields_are_kept,
            entries_are_listed_newest_first_for_their_tenant_only,
            the_total_counts_the_entries_of_the_tenant,
            the_action_filter_keeps_that_action,
            the_actor_filter_is_exact,
            the_actor_filter_is_not_a_prefix_match,
            a_page_is_a_slice_of_the_newest_first_list_with_the_full_total,
        ] $($rest)* }
    };
    (@port response_cache $($rest:tt)*) => {
        $crate::contract_tests! { @promises response_cache cache [
            a_fresh_key_misses,
            a_stored_value_hits,
            put_replaces,
            another_version_is_another_key,
            an_expired_value_misses,
        ] $($rest)* }
    };
    (@port cache_versions $($rest:tt)*) => {
        $crate::contract_tests! { @promises cache_versions versions [
            a_report_starts_at_version_zero,
            the_first_bump_moves_above_zero,
            bumps_count_up,
            current_reads_the_last_bump,
            reports_have_their_own_versions,
            tenants_have_their_own_versions,
            a_version_read_again_is_still_its_own_tenants,
        ] $($rest)* }
    };
    (@port scope_lock $($rest:tt)*) => {
        $crate::contract_tests! { @promises scope_lock locks [
            a_free_scope_is_acquired,
            a_held_scope_is_refused,
            only_the_owner_releases,
            only_the_owner_extends,
            a_failed_release_by_another_leaves_the_lock_held,
            the_owner_extends,
            the_owner_releases,
            a_released_lock_is_not_released_twice,
            a_released_scope_is_free_again,
            scopes_lock_independently,
            an_expired_lock_cannot_be_extended,
            an_expired_lock_is_free,
            the_former_owner_cannot_release_the_new_owners_lock,
        ] $($rest)* }
    };
    (@port event_ingestion $($rest:tt)*) => {
        $crate::contract_tests! { @promises event_ingestion ingestion [
            outcomes_come_in_request_order,
            new_ids_are_created,
            the_same_content_again_is_a_duplicate,
            other_content_under_a_known_id_is_a_conflict,
            one_call_decides_in_order,
            duplicates_and_conflicts_store_nothing,
            ids_are_unique_per_tenant,
            the_days_of_created_events_changed_when_they_were_ingested,
            other_days_did_not_change,
            a_duplicate_changes_nothing,
        ] $($rest)* }
    };
    (@port tenant_store $($rest:tt)*) => {
        $crate::contract_tests! { @promises tenant_store tenants [
            the_default_tenant_is_there_from_the_start,
            an_unknown_slug_is_not_found,
            a_created_tenant_has_a_new_id_and_its_name,
            a_created_tenant_is_found_by_slug,
            a_second_create_with_the_same_slug_is_already_exists,
            a_created_tenant_is_listed,
            a_created_tenant_has_the_default_source,
        ] $($rest)* }
    };
    (@port source_store $($rest:tt)*) => {
        $crate::contract_tests! { @promises source_store sources [
            the_reference_tenant_has_the_default_and_demo_sources_by_slug,
            a_created_source_is_active_in_its_tenant,
            a_slug_is_taken_once_per_tenant,
            another_tenant_does_not_see_a_source,
            another_tenant_may_use_the_same_slug,
        ] $($rest)* }
    };
    (@port api_key_store $($rest:tt)*) => {
        $crate::contract_tests! { @promises api_key_store api_keys [
            a_created_key_keeps_its_scopes_and_time,
            a_key_is_found_by_hash,
            an_unknown_hash_is_none,
            a_hash_is_stored_once,
            keys_are_listed_per_tenant,
            another_tenant_cannot_revoke_a_key,
            revoking_stamps_the_time,
            a_revoked_key_is_still_found_and_allows_nothing,
            the_first_revocation_time_stays,
        ] $($rest)* }
    };
    (@port $port:ident $($rest:tt)*) => {
        ::core::compile_error!(::core::concat!(
            "the contract suite has no port `",
            ::core::stringify!($port),
            "`"
        ));
    };
    (@promises $port:ident $module:ident [$($promise:ident,)+] names) => {
        &[$(::core::stringify!($promise)),+]
    };
    (@promises $port:ident $module:ident [$($promise:ident,)+] [$adapter:expr] [$fresh:expr]) => {
        mod $port {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[::tokio::test]
                async fn $promise() -> $crate::contract::Result<()> {
                    $crate::contract::check(
                        $adapter,
                        ::core::stringify!($port),
                        ::core::stringify!($promise),
                        $fresh,
                        $crate::contract::$module::$promise,
                    )
                    .await
                }
            )+
        }
    };
}

#[cfg(test)]
mod tests {
    /// Every public async function of a port's module is a promise the macro runs, in order.
    #[test]
    fn the_macro_runs_every_promise_of_every_port() {
        let ports: [(&str, &[&str], &str); 16] = [
            (
                "report_catalog",
                crate::contract_tests!(@port report_catalog names),
                include_str!("catalog.rs"),
            ),
            (
                "event_store",
                crate::contract_tests!(@port event_store names),
                include_str!("events.rs"),
            ),
            (
                "snapshot_store",
                crate::contract_tests!(@port snapshot_store names),
                include_str!("snapshots.rs"),
            ),
            (
                "rollup_store",
                crate::contract_tests!(@port rollup_store names),
                include_str!("rollups.rs"),
            ),
            (
                "dirty_buckets",
                crate::contract_tests!(@port dirty_buckets names),
                include_str!("freshness.rs"),
            ),
            (
                "rollup_definitions",
                crate::contract_tests!(@port rollup_definitions names),
                include_str!("definitions.rs"),
            ),
            (
                "run_store",
                crate::contract_tests!(@port run_store names),
                include_str!("runs.rs"),
            ),
            (
                "run_queue",
                crate::contract_tests!(@port run_queue names),
                include_str!("queue.rs"),
            ),
            (
                "audit_log",
                crate::contract_tests!(@port audit_log names),
                include_str!("audit.rs"),
            ),
            (
                "response_cache",
                crate::contract_tests!(@port response_cache names),
                include_str!("cache.rs"),
            ),
            (
                "cache_versions",
                crate::contract_tests!(@port cache_versions names),
                include_str!("versions.rs"),
            ),
            (
                "scope_lock",
                crate::contract_tests!(@port scope_lock names),
                include_str!("locks.rs"),
            ),
            (
                "event_ingestion",
                crate::contract_tests!(@port event_ingestion names),
                include_str!("ingestion.rs"),
            ),
            (
                "tenant_store",
                crate::contract_tests!(@port tenant_store names),
                include_str!("tenants.rs"),
            ),
            (
                "source_store",
                crate::contract_tests!(@port source_store names),
                include_str!("sources.rs"),
            ),
            (
                "api_key_store",
                crate::contract_tests!(@port api_key_store names),
                include_str!("api_keys.rs"),
            ),
        ];
        for (port, listed, source) in ports {
            let defined: Vec<&str> = source
                .lines()
                .filter_map(|line| line.strip_prefix("pub async fn "))
                .filter_map(|rest| rest.split('(').next())
                .collect();
            assert_eq!(listed, defined, "the promises of {port}");
        }
    }
}
