//! The ports: what the use cases need from the outside world, named by role.
//!
//! Every adapter (memory, PostgreSQL, Redis) implements these traits, and the contract test
//! suite in [`crate::contract`] checks that each one honours the `# Errors` sections below.

use std::time::Duration;

use async_trait::async_trait;
use domain::{
    ApiKey, AuditEntry, AuditFilter, CatalogQuery, DateRange, Description, DirtyBucket, DirtyScope,
    DisplayName, EventSource, IngestOutcome, KeyHash, KeyPrefix, LockToken, NewAuditEntry,
    NewEvent, Page, PageRequest, RecomputeRun, RecomputeScope, ReportDefinition, ReportSlug,
    Rollup, RollupDefinition, RollupPage, RollupQuery, RunFilter, RunId, RunMode, RunSummary,
    Scope, SourceSlug, Tenant, TenantId, TenantSlug, TransitionError, Window,
    rollup::{MeasureValue, MergedPage, SpanQuery},
};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// Which system answered a read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceSystem {
    Postgres,
    Redis,
    Memory,
}

impl SourceSystem {
    /// The lowercase name served in `source_system`.
    pub const fn as_str(self) -> &'static str {
        match self {
            SourceSystem::Postgres => "postgres",
            SourceSystem::Redis => "redis",
            SourceSystem::Memory => "memory",
        }
    }
}

/// The failure of a storage port.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The backing system could not be reached or did not answer in time. Retrying later may
    /// succeed.
    #[error("storage is unavailable")]
    Unavailable(#[source] anyhow::Error),
    /// Anything else: a bug, a broken invariant, an unexpected driver error.
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

/// The report catalog: definitions and their windows.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait ReportCatalog: Send + Sync {
    /// The public reports matching `query`, sorted and paginated, with the total number of
    /// matches. Ties in the sort column are broken by slug so pages are stable.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when the catalog cannot be read; [`StoreError::Unexpected`]
    /// otherwise.
    async fn list_public(&self, query: &CatalogQuery)
    -> Result<Page<ReportDefinition>, StoreError>;

    /// The definition called `slug`, public or not; `Ok(None)` when there is none.
    ///
    /// # Errors
    /// As [`ReportCatalog::list_public`].
    async fn get(&self, slug: &ReportSlug) -> Result<Option<ReportDefinition>, StoreError>;
}

/// Raw events, by the role each use case needs: producers' events written once
/// ([`EventIngestion`]), when they last changed ([`EventChanges`]), and the demo data an
/// operator loads or clears ([`EventAdmin`]). One adapter implements all three, and is wired as
/// the [`EventStore`] they make up.
pub trait EventStore: EventIngestion + EventChanges + EventAdmin {}

impl<T: EventIngestion + EventChanges + EventAdmin + ?Sized> EventStore for T {}

/// Producers' events, stored once each.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait EventIngestion: Send + Sync {
    /// Stores the events of `tenant` whose `event_id` is new and says what became of each, in
    /// order: `Created`; `Duplicate` when the tenant already has the id with the same
    /// fingerprint; `Conflict` when it has the id with another fingerprint. Events of the same
    /// call sharing an id are decided in order, as if sent one after the other. The UTC days of
    /// created events are marked changed at `at`, and so is every bucket the created events
    /// change (see [`domain::freshness::marks_of`]) among the tenant's rollups as they are
    /// when the call commits: the built-in and standard ones, and its definitions (a
    /// definition stored concurrently either sees these events or is seen by this call). The
    /// call is atomic and durable: when it returns, every created event and its marks are
    /// committed; on error none is.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] or [`StoreError::Unexpected`]; nothing was stored.
    async fn ingest(
        &self,
        tenant: TenantId,
        events: Vec<IngestEvent>,
        at: OffsetDateTime,
    ) -> Result<Vec<IngestOutcome>, StoreError>;
}

/// When events last changed, to tell a snapshot that predates them.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait EventChanges: Send + Sync {
    /// The latest time events of `tenant` dated inside `range` were created through
    /// [`EventIngestion::ingest`]; `None` when none were.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] or [`StoreError::Unexpected`].
    async fn changed_since(
        &self,
        tenant: TenantId,
        range: DateRange,
    ) -> Result<Option<OffsetDateTime>, StoreError>;
}

/// A tenant's events as a whole: the demo data, its count, a reset.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait EventAdmin: Send + Sync {
    /// Writes the demo events `1..=count` of `domain::demo` as seeded at `now`, skipping ids
    /// the tenant already has, and returns how many were new. A store with planner statistics
    /// brings them up to date afterwards, as after any bulk load.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when the store cannot be written, in which case nothing was
    /// stored; [`StoreError::Unexpected`] otherwise.
    async fn load_demo(
        &self,
        tenant: TenantId,
        count: u64,
        now: OffsetDateTime,
    ) -> Result<u64, StoreError>;

    /// How many events `tenant` has.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] or [`StoreError::Unexpected`].
    async fn count(&self, tenant: TenantId) -> Result<u64, StoreError>;

    /// Deletes up to `batch` events of `tenant` per statement that occurred before `before`
    /// (UTC midnight), until none is left, and returns how many there were. Buckets already
    /// built keep counting them; a rebuild of those days no longer would (retention runs only
    /// past every rollup's retention).
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] or [`StoreError::Unexpected`]; the batches deleted before
    /// the failure stay deleted.
    async fn purge(
        &self,
        tenant: TenantId,
        before: time::Date,
        batch: u32,
    ) -> Result<u64, StoreError>;

    /// Deletes every event of `tenant`, with the changes and dirty marks they made, and returns
    /// how many there were.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] or [`StoreError::Unexpected`]; on error nothing was deleted.
    async fn clear(&self, tenant: TenantId) -> Result<u64, StoreError>;
}

/// An event to ingest, with the fingerprint of its content (everything but its id).
#[derive(Debug, Clone, PartialEq)]
pub struct IngestEvent {
    pub event: NewEvent,
    pub fingerprint: String,
}

/// The failure of a tenancy port.
#[derive(Debug, thiserror::Error)]
pub enum TenancyError {
    /// Something with this slug already exists.
    #[error("{0} already exists")]
    AlreadyExists(String),
    /// The store could not be reached.
    #[error("tenancy storage is unavailable")]
    Unavailable(#[source] anyhow::Error),
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

/// Tenants.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait TenantStore: Send + Sync {
    /// Creates a tenant.
    ///
    /// # Errors
    /// [`TenancyError::AlreadyExists`] when the slug is taken; otherwise unavailable/unexpected.
    async fn create(&self, slug: &TenantSlug, name: &DisplayName) -> Result<Tenant, TenancyError>;

    /// The tenant called `slug`; `Ok(None)` when there is none.
    ///
    /// # Errors
    /// [`TenancyError::Unavailable`] or [`TenancyError::Unexpected`].
    async fn find(&self, slug: &TenantSlug) -> Result<Option<Tenant>, TenancyError>;

    /// Every tenant, by id.
    ///
    /// # Errors
    /// [`TenancyError::Unavailable`] or [`TenancyError::Unexpected`].
    async fn list(&self) -> Result<Vec<Tenant>, TenancyError>;
}

/// The event sources of each tenant.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait SourceStore: Send + Sync {
    /// The sources of `tenant`, by slug.
    ///
    /// # Errors
    /// [`TenancyError::Unavailable`] or [`TenancyError::Unexpected`].
    async fn list(&self, tenant: TenantId) -> Result<Vec<EventSource>, TenancyError>;

    /// Adds a source to `tenant`.
    ///
    /// # Errors
    /// [`TenancyError::AlreadyExists`] when the tenant has the slug; otherwise
    /// unavailable/unexpected.
    async fn create(
        &self,
        tenant: TenantId,
        slug: &SourceSlug,
        provider_name: &DisplayName,
        description: &Description,
    ) -> Result<EventSource, TenancyError>;
}

/// A key to store: its hash and prefix, never the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewApiKey {
    pub tenant: TenantId,
    pub prefix: KeyPrefix,
    pub key_hash: KeyHash,
    pub scopes: Vec<Scope>,
    pub name: Description,
    pub created_at: OffsetDateTime,
}

/// API keys, stored as hashes.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait ApiKeyStore: Send + Sync {
    /// Stores a key.
    ///
    /// # Errors
    /// [`TenancyError::AlreadyExists`] when the hash is taken; otherwise unavailable/unexpected.
    async fn create(&self, key: &NewApiKey) -> Result<ApiKey, TenancyError>;

    /// The key whose hash is `key_hash`, revoked or not; `Ok(None)` when there is none.
    ///
    /// # Errors
    /// [`TenancyError::Unavailable`] or [`TenancyError::Unexpected`].
    async fn find_by_hash(&self, key_hash: &KeyHash) -> Result<Option<ApiKey>, TenancyError>;

    /// The keys of `tenant`, oldest first.
    ///
    /// # Errors
    /// [`TenancyError::Unavailable`] or [`TenancyError::Unexpected`].
    async fn list(&self, tenant: TenantId) -> Result<Vec<ApiKey>, TenancyError>;

    /// Revokes the key of `tenant` with `prefix` at `at` and returns it; `Ok(None)` when the
    /// tenant has no such key. Revoking a revoked key keeps its first revocation time.
    ///
    /// # Errors
    /// [`TenancyError::Unavailable`] or [`TenancyError::Unexpected`].
    async fn revoke(
        &self,
        tenant: TenantId,
        prefix: &KeyPrefix,
        at: OffsetDateTime,
    ) -> Result<Option<ApiKey>, TenancyError>;
}

/// A tenant's rollup definition as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRollup {
    pub tenant: TenantId,
    pub definition: RollupDefinition,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

/// The failure of a [`RollupDefinitions`] write.
#[derive(Debug, thiserror::Error)]
pub enum DefinitionError {
    /// The tenant already has a rollup with this slug.
    #[error("report {0} already exists")]
    SlugTaken(String),
    /// The tenant already has as many rollups as it may.
    #[error("the tenant already has {0} reports, the most it may have")]
    LimitReached(u32),
    /// The tenant has no rollup with this slug.
    #[error("no report {0}")]
    NotFound(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Tenants' rollup definitions (reports defined as data), by tenant and slug.
///
/// A stored or replaced definition marks dirty, at `at` and in the same transaction, every
/// bucket of each of its windows, within the window's retention counted back from `at`'s day,
/// that holds days the tenant has events on ([`domain::DirtyReason::Definition`]); a deleted
/// one takes its marks with it.
#[async_trait]
pub trait RollupDefinitions: Send + Sync {
    /// Stores a new definition of `tenant`, unless the tenant has `limit` already.
    ///
    /// # Errors
    /// [`DefinitionError::SlugTaken`], [`DefinitionError::LimitReached`] (checked atomically
    /// with the insert: two concurrent creates never pass the limit together), or a store
    /// error; on error nothing is written.
    async fn create(
        &self,
        tenant: TenantId,
        definition: &RollupDefinition,
        limit: u32,
        at: OffsetDateTime,
    ) -> Result<StoredRollup, DefinitionError>;

    /// Replaces the definition of the same slug, keeping its `created_at`.
    ///
    /// # Errors
    /// [`DefinitionError::NotFound`] or a store error; on error nothing is written.
    async fn replace(
        &self,
        tenant: TenantId,
        definition: &RollupDefinition,
        at: OffsetDateTime,
    ) -> Result<StoredRollup, DefinitionError>;

    /// Deletes the definition called `slug`; whether there was one.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] or [`StoreError::Unexpected`].
    async fn delete(&self, tenant: TenantId, slug: &ReportSlug) -> Result<bool, StoreError>;

    /// The definition called `slug`; `Ok(None)` when the tenant has none.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] or [`StoreError::Unexpected`].
    async fn get(
        &self,
        tenant: TenantId,
        slug: &ReportSlug,
    ) -> Result<Option<StoredRollup>, StoreError>;

    /// Every definition of `tenant`, by slug.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] or [`StoreError::Unexpected`].
    async fn list(&self, tenant: TenantId) -> Result<Vec<StoredRollup>, StoreError>;
}

/// A rebuild of the snapshot rows of one rollup over whole buckets of one or more windows,
/// each for its own run: the runs of one rollup claimed together share one pass over the events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RollupRebuild {
    pub tenant: TenantId,
    pub report: ReportSlug,
    /// What the rows compute.
    pub rollup: Rollup,
    /// At least one, each window at most once.
    pub windows: Vec<WindowRebuild>,
    pub computed_at: OffsetDateTime,
}

impl RollupRebuild {
    /// Checks that the rebuild names at least one window and each at most once, as
    /// [`RollupStore::rebuild`] requires.
    ///
    /// # Errors
    /// [`StoreError::Unexpected`] when it does not.
    pub fn check(&self) -> Result<(), StoreError> {
        let mut windows: Vec<Window> = self.windows.iter().map(|w| w.window).collect();
        windows.sort_unstable();
        windows.dedup();
        if windows.is_empty() || windows.len() != self.windows.len() {
            return Err(StoreError::Unexpected(anyhow::anyhow!(
                "a rollup rebuild names at least one window, each once"
            )));
        }
        Ok(())
    }
}

/// One window of a [`RollupRebuild`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowRebuild {
    pub window: Window,
    /// Already widened to whole buckets of `window`.
    pub range: DateRange,
    /// Every bucket of `range`, or only those dirty in the snapshot the rebuild reads.
    pub mode: RunMode,
    /// The run the new rows of this window point to.
    pub run_id: RunId,
}

/// What a rollup rebuild did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RollupRebuildOutcome {
    pub rows_deleted: u64,
    pub rows_inserted: u64,
    /// Events whose value for a `sum` of a property was present but not an integer (see
    /// [`domain::rollup::Addend::Skipped`]), counted once per measure.
    pub values_skipped: u64,
    /// How many buckets were rebuilt: all of the range's, or its dirty ones.
    pub bucket_count: u32,
    /// The dirty buckets of the range the rebuild saw, by bucket: every one of them is
    /// rebuilt, and its mark cleared unless it changed again meanwhile.
    pub dirty: Vec<DirtyBucket>,
}

/// The snapshot rows of every report (the built-in ones and those defined as data): their
/// rebuild from the tenant's events, and their reads.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait RollupStore: Send + Sync {
    /// The system that answers reads, as served in `source_system`.
    fn system(&self) -> SourceSystem;

    /// Atomically replaces, for each window of `request`, the rows of every bucket of its
    /// range (in [`RunMode::Incremental`], of every dirty bucket of its range) with rows
    /// aggregated from the tenant's events that pass the rollup's filters: one row per bucket
    /// and combination of dimension values (null included) that has events, holding every
    /// measure, pointing to that window's run. Buckets outside the ranges, clean buckets of an
    /// incremental window, other windows and other rollups are untouched; a reader sees either
    /// the old rows of every window or the new ones, never a mix. The dirty marks are read in
    /// the snapshot the events are read in, and the same transaction clears those of rebuilt
    /// buckets unless they changed after that snapshot: an event committed during the rebuild
    /// keeps its bucket dirty, its first mark moved up to `computed_at` (taken before the
    /// snapshot, so what changed before it is counted). Returns one outcome per window, in
    /// request order.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] or [`StoreError::Unexpected`] (a sum beyond the range of a
    /// 64-bit integer, a window asked twice); on error nothing changed.
    async fn rebuild(
        &self,
        request: &RollupRebuild,
    ) -> Result<Vec<RollupRebuildOutcome>, StoreError>;

    /// The page of rows `query` asks for, summed from the snapshot rows whose bucket starts
    /// inside `query.range`, grouped, filtered and ordered as [`RollupQuery`] defines.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] or [`StoreError::Unexpected`].
    async fn read(&self, query: &RollupQuery) -> Result<RollupPage, StoreError>;

    /// Every row `query` selects, unpaged (its page is ignored), ordered as a read orders
    /// them, each with its measures as they merge further: a distinct measure as its merged
    /// sketch. For answers that merge snapshot rows with what they cannot hold (the raw events
    /// of a ragged edge); never cached.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] or [`StoreError::Unexpected`].
    async fn read_merged(&self, query: &RollupQuery) -> Result<MergedPage, StoreError>;

    /// The measures of the events `span` selects, combined into one value each (a count, a
    /// sum, a sketch), in definition order; empty totals and sketches when there are none.
    /// Reads raw events through their time index.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] or [`StoreError::Unexpected`] (a sum beyond the range of a
    /// 64-bit integer).
    async fn aggregate_span(&self, span: &SpanQuery) -> Result<Vec<MeasureValue>, StoreError>;

    /// The dirty buckets of `tenant`'s `report` and `window` that start inside `range`, by
    /// bucket.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] or [`StoreError::Unexpected`].
    async fn dirty(
        &self,
        tenant: TenantId,
        report: &ReportSlug,
        window: Window,
        range: DateRange,
    ) -> Result<Vec<DirtyBucket>, StoreError>;

    /// Every tenant's rollups and windows that have dirty buckets starting on or after
    /// `since`, summed up (see [`DirtyScope`]; `today` is the current day), by tenant, report
    /// and window.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] or [`StoreError::Unexpected`].
    async fn dirty_scopes(
        &self,
        since: time::Date,
        today: time::Date,
    ) -> Result<Vec<DirtyScope>, StoreError>;

    /// Deletes the snapshot rows of `tenant`'s `report` and `window` whose bucket starts before
    /// `before`, up to `batch` rows per statement until none is left, with the dirty marks of
    /// those buckets, and returns how many rows there were.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] or [`StoreError::Unexpected`]; the batches deleted before
    /// the failure stay deleted.
    async fn expire(
        &self,
        tenant: TenantId,
        report: &ReportSlug,
        window: Window,
        before: time::Date,
        batch: u32,
    ) -> Result<u64, StoreError>;

    /// Deletes every snapshot row of `report` for `tenant`, in every window, and returns how
    /// many there were.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] or [`StoreError::Unexpected`]; on error nothing was deleted.
    async fn remove(&self, tenant: TenantId, report: &ReportSlug) -> Result<u64, StoreError>;

    /// Deletes every snapshot row of `tenant`, of every report, and returns how many there
    /// were.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] or [`StoreError::Unexpected`]; on error nothing was deleted.
    async fn clear(&self, tenant: TenantId) -> Result<u64, StoreError>;
}

#[cfg(feature = "contract-tests")]
/// One stored snapshot row, for inspection of lineage (tests only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotRow {
    pub bucket_start: time::Date,
    /// The hour of day of an `hour` bucket, 0 for other windows.
    pub bucket_hour: u8,
    pub dimension_values: Vec<Option<String>>,
    pub measure_values: Vec<i64>,
    pub computed_at: OffsetDateTime,
    pub run_id: RunId,
}

/// Snapshot rows one by one, with their lineage: what the contract suite and the tests check a
/// rebuild against. No production path reads rows this way, so adapters implement it only
/// for tests (feature `test-support`).
#[cfg(feature = "contract-tests")]
#[async_trait]
pub trait SnapshotRows: RollupStore {
    /// The stored rows of `report` (a rollup of `dimensions` dimensions) and `window` of
    /// `tenant` whose bucket starts inside `range`, ordered by bucket and dimension values.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] or [`StoreError::Unexpected`].
    async fn rows(
        &self,
        tenant: TenantId,
        report: &ReportSlug,
        dimensions: usize,
        window: Window,
        range: DateRange,
    ) -> Result<Vec<SnapshotRow>, StoreError>;
}

/// The failure of a [`RunStore`] operation.
#[derive(Debug, thiserror::Error)]
pub enum RunStoreError {
    /// No run has this id for this tenant.
    #[error("no recompute run {0}")]
    NotFound(RunId),
    /// The lifecycle does not allow the change.
    #[error(transparent)]
    Transition(#[from] TransitionError),
    /// Another run of the same scope is still pending or running.
    #[error("another recompute of this scope is active")]
    ActiveScope,
    /// The store could not be reached.
    #[error("run storage is unavailable")]
    Unavailable(#[source] anyhow::Error),
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

/// Recompute runs and their lifecycle.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait RunStore: Send + Sync {
    /// Stores a new pending run.
    ///
    /// # Errors
    /// [`RunStoreError::ActiveScope`] when a pending or running run has the same scope
    /// ([`RecomputeRun::scope`]); [`RunStoreError::Unavailable`] or
    /// [`RunStoreError::Unexpected`] otherwise. On error nothing was stored.
    async fn create(&self, run: &RecomputeRun) -> Result<(), RunStoreError>;

    /// The run `id` of `tenant`; `Ok(None)` when the tenant has no such run.
    ///
    /// # Errors
    /// [`RunStoreError::Unavailable`] or [`RunStoreError::Unexpected`].
    async fn get(&self, tenant: TenantId, id: RunId)
    -> Result<Option<RecomputeRun>, RunStoreError>;

    /// The runs of `tenant` passing `filter`, newest request first (ties by id), paginated,
    /// with the total number of matches.
    ///
    /// # Errors
    /// [`RunStoreError::Unavailable`] or [`RunStoreError::Unexpected`].
    async fn list(
        &self,
        tenant: TenantId,
        filter: &RunFilter,
        page: PageRequest,
    ) -> Result<Page<RecomputeRun>, RunStoreError>;

    /// Moves a pending run to running, stamping `started_at`, and returns it.
    ///
    /// # Errors
    /// [`RunStoreError::NotFound`]; [`RunStoreError::Transition`] when it is not pending (for
    /// example because another worker claimed it); otherwise as [`RunStore::get`].
    async fn start(
        &self,
        tenant: TenantId,
        id: RunId,
        at: OffsetDateTime,
    ) -> Result<RecomputeRun, RunStoreError>;

    /// Moves a running run to completed with its summary and returns it.
    ///
    /// # Errors
    /// [`RunStoreError::NotFound`]; [`RunStoreError::Transition`] unless it is running.
    async fn complete(
        &self,
        tenant: TenantId,
        id: RunId,
        summary: RunSummary,
        at: OffsetDateTime,
    ) -> Result<RecomputeRun, RunStoreError>;

    /// Moves a pending or running run to failed with `error` and returns it.
    ///
    /// # Errors
    /// [`RunStoreError::NotFound`]; [`RunStoreError::Transition`] when it already finished.
    async fn fail(
        &self,
        tenant: TenantId,
        id: RunId,
        error: &str,
        at: OffsetDateTime,
    ) -> Result<RecomputeRun, RunStoreError>;

    /// Moves a run that is still pending to failed with `error` and returns it: a run given
    /// up before any worker claimed it, checked and changed at once.
    ///
    /// # Errors
    /// [`RunStoreError::NotFound`]; [`RunStoreError::Transition`] when it is no longer pending
    /// (a worker claimed it meanwhile), in which case nothing changed.
    async fn abandon(
        &self,
        tenant: TenantId,
        id: RunId,
        error: &str,
        at: OffsetDateTime,
    ) -> Result<RecomputeRun, RunStoreError>;

    /// Tells the store that the worker executing run `id` of `tenant` is still at it, so the
    /// run keeps its claim: a store that recovers runs whose worker went silent (see
    /// [`RunQueue::recover`]) extends the run's lease by a full lease from now. Returns whether
    /// the run is running; `Ok(false)` (it finished, was recovered, or does not exist) tells the
    /// worker to stop renewing.
    ///
    /// # Errors
    /// [`RunStoreError::Unavailable`] or [`RunStoreError::Unexpected`]; the lease is unchanged.
    async fn renew_lease(&self, tenant: TenantId, id: RunId) -> Result<bool, RunStoreError>;
}

/// The failure of [`RunQueue::enqueue`].
#[derive(Debug, thiserror::Error)]
pub enum EnqueueError {
    /// The queue holds as many runs as it may; the caller should fail the run.
    #[error("the recompute queue is full")]
    Full,
    /// The queue no longer accepts work because the process is shutting down.
    #[error("the recompute queue is closed")]
    Closed,
    /// The queue's store cannot be reached right now.
    #[error("the recompute queue is unavailable")]
    Unavailable(#[source] anyhow::Error),
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

/// The work queue between a trigger and the workers.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait RunQueue: Send + Sync {
    /// Queues the pending run for a worker.
    ///
    /// # Errors
    /// [`EnqueueError::Full`] when the queue is at capacity, [`EnqueueError::Closed`] after
    /// [`RunQueue::close`], [`EnqueueError::Unavailable`] when its store cannot be reached; in
    /// every case the run was not queued.
    async fn enqueue(&self, run: &RecomputeRun) -> Result<(), EnqueueError>;

    /// Waits for the oldest queued run, claims it (pending → running, as
    /// [`RunStore::start`], with `started_at` the moment of the claim) and returns it;
    /// `Ok(None)` once the queue is closed. A queued run that is no longer pending is skipped.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when the queue cannot be read right now (the caller retries
    /// after a pause); [`StoreError::Unexpected`] otherwise.
    async fn claim_next(&self) -> Result<Option<RecomputeRun>, StoreError>;

    /// Claims, as [`RunQueue::claim_next`] does, the pending runs of `run`'s tenant and report
    /// in windows other than `run`'s whose ranges meet `run`'s (overlapping, or a day apart
    /// at most), the oldest of each window, so that one pass over the events serves them all;
    /// returns them, possibly none, without waiting. A run stored as pending counts whether
    /// or not it was queued yet (a backfill admits every window before it queues any). A
    /// closed queue claims none.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] or [`StoreError::Unexpected`]; nothing was claimed.
    async fn claim_companions(&self, run: &RecomputeRun) -> Result<Vec<RecomputeRun>, StoreError>;

    /// Recovers the runs whose worker stopped renewing their lease (see
    /// [`RunStore::renew_lease`]), which happens only when the worker's process died or lost
    /// the store for longer than a lease: each is handed back to the queue (pending again,
    /// retried by any worker) or, once it has been claimed as often as the queue allows, failed
    /// with the reason. Returns both kinds, so the caller can audit the failed ones and free
    /// their scope locks. A queue whose runs cannot outlive their process recovers nothing.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] or [`StoreError::Unexpected`]; nothing was changed.
    async fn recover(&self) -> Result<Recovered, StoreError>;

    /// How many runs are pending, across every tenant and process, and when the oldest of
    /// them was requested: what an operator watches to see the workers keep up.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] or [`StoreError::Unexpected`].
    async fn backlog(&self) -> Result<Backlog, StoreError>;

    /// Stops handing out work: waiting and later [`RunQueue::claim_next`] calls return
    /// `Ok(None)`. Idempotent.
    async fn close(&self);
}

/// The pending runs of a [`RunQueue`], summed up.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Backlog {
    /// How many runs are pending.
    pub pending: u64,
    /// When the oldest of them was requested; `None` when none is.
    pub oldest_requested_at: Option<OffsetDateTime>,
}

/// The runs one [`RunQueue::recover`] call took back from silent workers, as they are now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recovered {
    /// Pending again, to be claimed by another worker; they keep their scope lock token.
    pub retried: Vec<RecomputeRun>,
    /// Failed for good after too many claims; their failure is not audited yet.
    pub failed: Vec<RecomputeRun>,
}

/// The operational audit trail.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait AuditLog: Send + Sync {
    /// Appends an entry and returns it with its id and creation time.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] or [`StoreError::Unexpected`]; on error nothing was written.
    async fn record(&self, entry: NewAuditEntry) -> Result<AuditEntry, StoreError>;

    /// The entries of `tenant` passing `filter`, newest first (ties by id, descending),
    /// paginated, with the total number of matches.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] or [`StoreError::Unexpected`].
    async fn list(
        &self,
        tenant: TenantId,
        filter: &AuditFilter,
        page: PageRequest,
    ) -> Result<Page<AuditEntry>, StoreError>;
}

/// The failure of a cache or lock operation. Callers degrade instead of failing a request.
#[derive(Debug, thiserror::Error)]
#[error("the cache is unavailable")]
pub struct CacheError(#[source] pub anyhow::Error);

/// A versioned key of the response cache: `report:{tenant}:{slug}:v{version}:{hash}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CacheKey(String);

impl CacheKey {
    /// The key of a result of `slug` at `version` whose normalized parameters hash to
    /// `params_hash`.
    pub fn report(tenant: TenantId, slug: &ReportSlug, version: u64, params_hash: &str) -> Self {
        Self(format!("report:{tenant}:{slug}:v{version}:{params_hash}"))
    }

    /// The key text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Serialized report responses, retired by version bumps rather than deletion.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait ResponseCache: Send + Sync {
    /// The system that answers hits, as served in `source_system`.
    fn system(&self) -> SourceSystem;

    /// The value stored under `key`, unless it expired; `Ok(None)` on a miss.
    ///
    /// # Errors
    /// [`CacheError`] when the cache cannot be read; callers treat it as a miss.
    async fn get(&self, key: &CacheKey) -> Result<Option<Vec<u8>>, CacheError>;

    /// Stores `value` under `key` for `ttl` (at least a millisecond), replacing any value.
    ///
    /// # Errors
    /// [`CacheError`] when the cache cannot be written; callers ignore it.
    async fn put(&self, key: &CacheKey, value: Vec<u8>, ttl: Duration) -> Result<(), CacheError>;
}

/// The per-report version counters that retire cache entries.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait CacheVersions: Send + Sync {
    /// The current version of the report `slug` of `tenant`; 0 before the first bump.
    ///
    /// # Errors
    /// [`CacheError`] when the counter cannot be read.
    async fn current(&self, tenant: TenantId, slug: &ReportSlug) -> Result<u64, CacheError>;

    /// Atomically increments the version and returns the new value, so no entry cached under
    /// an older version is read again. Never scans or deletes keys. Versions only grow, even
    /// when the store that counts them loses its data: a key is never used for two results.
    ///
    /// # Errors
    /// [`CacheError`] when the counter cannot be written.
    async fn bump(&self, tenant: TenantId, slug: &ReportSlug) -> Result<u64, CacheError>;
}

/// Mutual exclusion of recomputes per scope, with expiry.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait ScopeLock: Send + Sync {
    /// Takes the lock of `scope` for `ttl` with `token`; `Ok(false)` when someone holds it.
    ///
    /// # Errors
    /// [`CacheError`] when the lock store cannot be reached; nothing was taken.
    async fn acquire(
        &self,
        scope: &RecomputeScope,
        token: &LockToken,
        ttl: Duration,
    ) -> Result<bool, CacheError>;

    /// Releases the lock of `scope` if `token` still owns it; `Ok(false)` otherwise (it expired
    /// or someone else holds it now, and that holder's lock is left alone).
    ///
    /// # Errors
    /// [`CacheError`] when the lock store cannot be reached.
    async fn release(&self, scope: &RecomputeScope, token: &LockToken) -> Result<bool, CacheError>;

    /// Resets the expiry of the lock of `scope` to `ttl` if `token` still owns it.
    ///
    /// # Errors
    /// [`CacheError`] when the lock store cannot be reached.
    async fn extend(
        &self,
        scope: &RecomputeScope,
        token: &LockToken,
        ttl: Duration,
    ) -> Result<bool, CacheError>;
}

/// The time, controlled by tests.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait Clock: Send + Sync {
    /// The current instant, in UTC.
    fn now(&self) -> OffsetDateTime;

    /// Waits for `duration` (used for back-off between retries).
    async fn pause(&self, duration: Duration);
}

/// The health of one dependency.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DependencyStatus {
    Ok,
    Unavailable,
    NotConfigured,
}

/// A dependency the service can check.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait HealthProbe: Send + Sync {
    /// Whether the dependency answers right now: [`DependencyStatus::Ok`] or
    /// [`DependencyStatus::Unavailable`]. Must return within the probe's own short timeout and
    /// never error.
    async fn check(&self) -> DependencyStatus;

    /// Whether the process can do its work with this dependency: by default, whether it
    /// answers. A store whose schema must be migrated first also checks that.
    ///
    /// # Errors
    /// Why it cannot, in a sentence an operator can act on.
    async fn ready(&self) -> Result<(), String> {
        match self.check().await {
            DependencyStatus::Unavailable => Err("does not answer".to_owned()),
            DependencyStatus::Ok | DependencyStatus::NotConfigured => Ok(()),
        }
    }
}

/// A durable stream of event messages that consumers share (NATS JetStream here; a Kafka
/// consumer group would fit the same shape): each message is delivered until it is settled,
/// and a delivery left unsettled by a consumer that dies is delivered again.
#[async_trait]
pub trait EventFeed: Send + Sync {
    /// The next message, waiting for one; `None` once the feed is closed.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when the stream cannot be read right now (the caller
    /// retries after a pause).
    async fn next(&self) -> Result<Option<Box<dyn FeedDelivery>>, StoreError>;

    /// Stops handing out messages: every [`EventFeed::next`], waiting or to come, returns
    /// `None`. Messages fetched and not handed out are left to be delivered again.
    async fn close(&self);

    /// How far consumers are behind: messages not yet delivered or not yet settled.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when the stream cannot be asked.
    async fn lag(&self) -> Result<FeedLag, StoreError>;
}

/// How far the consumers of a feed are behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FeedLag {
    /// Messages not delivered yet.
    pub pending: u64,
    /// Messages delivered and not yet settled.
    pub in_flight: u64,
    /// When the oldest message not settled yet was published; `None` when none waits.
    pub oldest_published_at: Option<OffsetDateTime>,
}

/// One delivery of a message, to be settled once: acknowledged, handed back for a later
/// delivery, or set aside as dead.
#[async_trait]
pub trait FeedDelivery: Send {
    /// The message.
    fn message(&self) -> &crate::stream::StreamMessage;

    /// Why the delivery is not a message this service can read (a subject out of shape), if
    /// it is not: it is dead-lettered without a look at its body.
    fn unreadable(&self) -> Option<&str> {
        None
    }

    /// How many times it has been delivered, this time included.
    fn delivered(&self) -> u64;

    /// Its events are committed: never deliver it again.
    ///
    /// # Errors
    /// When the acknowledgement cannot be sent (the message will be delivered again, and
    /// its events found stored).
    async fn ack(self: Box<Self>) -> Result<(), StoreError>;

    /// Deliver it again, no sooner than `after`.
    ///
    /// # Errors
    /// When the stream cannot be told (it delivers the message again after its wait anyway).
    async fn retry(self: Box<Self>, after: Duration) -> Result<(), StoreError>;

    /// It can never be stored: keep it aside with `reason`, then never deliver it again.
    ///
    /// # Errors
    /// When it cannot be set aside; it is then not settled, and will be delivered again.
    async fn dead_letter(self: Box<Self>, reason: &str) -> Result<(), StoreError>;
}
