//! Tenants' reports defined as data: creating, changing and deleting rollup definitions, with
//! the runs that build them and the audit of each change.

use std::sync::Arc;

use domain::{
    Actor, AuditAction, DateRange, NewAuditEntry, PageRequest, RecomputeRun, ReportKind,
    ReportSlug, RollupDefinition, RollupOrder, RollupQuery, RunMode, TenantId, ValidationError,
    Window, audit::RESOURCE_REPORT, parse_date,
};
use serde_json::{Value, json};
use time::Duration;
use tracing::warn;

use crate::{
    RecomputeService,
    ports::{
        AuditLog, CacheVersions, Clock, DefinitionError, RollupDefinitions, RollupStore,
        StoreError, StoredRollup,
    },
    read_cache::{CachedPage, CachedReads, ReadInfo},
    recompute::{RecomputeRequest, TriggerError},
};

/// How many reports a tenant may define unless configured otherwise.
pub const DEFAULT_MAX_REPORTS_PER_TENANT: u32 = 20;

/// The failure of a change to a tenant's reports.
#[derive(Debug, thiserror::Error)]
pub enum RollupError {
    /// Fields of the definition broke rules; nothing was written.
    #[error("{} invalid field(s)", .0.len())]
    Invalid(Vec<ValidationError>),
    /// The tenant already has a report with this slug, or it is a built-in report's.
    #[error("{0}")]
    SlugTaken(String),
    /// The tenant has no report with this slug.
    #[error("no report {0} is defined by this tenant")]
    NotFound(String),
    /// A built-in report cannot be changed or deleted.
    #[error("{0} is a built-in report; built-in reports cannot be changed or deleted")]
    BuiltIn(String),
    /// The store could not be reached; nothing was written.
    #[error("report storage is unavailable")]
    Unavailable(#[source] anyhow::Error),
    #[error(transparent)]
    Unexpected(anyhow::Error),
}

impl From<StoreError> for RollupError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Unavailable(e) => RollupError::Unavailable(e),
            StoreError::Unexpected(e) => RollupError::Unexpected(e),
        }
    }
}

impl From<ValidationError> for RollupError {
    fn from(err: ValidationError) -> Self {
        RollupError::Invalid(vec![err])
    }
}

/// A definition as stored, with the runs queued to build it.
#[derive(Debug, Clone)]
pub struct RollupChange {
    pub stored: StoredRollup,
    /// One run per window, pending, over the window's retention (at most the longest range a
    /// recompute takes) up to today; empty when nothing computed changed.
    pub runs: Vec<RecomputeRun>,
}

/// The ports a [`RollupService`] works with.
#[derive(Clone)]
pub struct RollupPorts {
    pub definitions: Arc<dyn RollupDefinitions>,
    pub rollups: Arc<dyn RollupStore>,
    /// Reads of the snapshots, through the cache.
    pub reads: CachedReads,
    /// Bumped to retire cached reads of a changed or deleted report.
    pub versions: Arc<dyn CacheVersions>,
    pub audit: Arc<dyn AuditLog>,
    pub clock: Arc<dyn Clock>,
}

/// Creates, changes and deletes a tenant's rollup definitions.
#[derive(Clone)]
pub struct RollupService {
    ports: RollupPorts,
    recompute: RecomputeService,
    max_per_tenant: u32,
    max_range_days: u32,
}

impl std::fmt::Debug for RollupService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RollupService")
            .field("max_per_tenant", &self.max_per_tenant)
            .finish_non_exhaustive()
    }
}

/// Whether `slug` is a built-in report's, or a rollup's that every tenant has.
fn is_builtin(slug: &ReportSlug) -> bool {
    ReportKind::from_slug(slug).is_some() || domain::rollup::standard_rollup(slug).is_some()
}

impl RollupService {
    /// A service allowing `max_per_tenant` definitions per tenant, whose backfills cover at
    /// most `max_range_days`; it queues runs through `recompute`.
    pub fn new(
        ports: RollupPorts,
        recompute: RecomputeService,
        max_per_tenant: u32,
        max_range_days: u32,
    ) -> Self {
        Self {
            ports,
            recompute,
            max_per_tenant,
            max_range_days,
        }
    }

    /// Defines a new report for `tenant` from `body`, audits it and queues its backfill.
    ///
    /// # Errors
    /// [`RollupError::Invalid`] (every broken rule, or the tenant's limit, on `slug`),
    /// [`RollupError::SlugTaken`], or a store error. A backfill run that cannot be queued does
    /// not undo the definition: it is left to a later recompute, and logged.
    pub async fn create(
        &self,
        tenant: TenantId,
        body: &Value,
        actor: &Actor,
    ) -> Result<RollupChange, RollupError> {
        let definition = RollupDefinition::parse(body).map_err(RollupError::Invalid)?;
        if is_builtin(&definition.slug) {
            return Err(RollupError::SlugTaken(format!(
                "{} is the slug of a built-in report; choose another",
                definition.slug
            )));
        }
        let now = self.ports.clock.now();
        let stored = self
            .ports
            .definitions
            .create(tenant, &definition, self.max_per_tenant, now)
            .await
            .map_err(|err| match err {
                DefinitionError::SlugTaken(slug) => {
                    RollupError::SlugTaken(format!("report {slug} already exists"))
                }
                DefinitionError::LimitReached(limit) => {
                    RollupError::Invalid(vec![ValidationError::new(
                        "slug",
                        format!(
                            "cannot be added: the tenant already has {limit} reports, the most \
                             it may have; delete one first"
                        ),
                    )])
                }
                DefinitionError::NotFound(slug) => RollupError::NotFound(slug),
                DefinitionError::Store(e) => e.into(),
            })?;
        // A definition whose creation is not audited is not kept.
        if let Err(err) = self
            .audit(
                tenant,
                actor,
                AuditAction::ReportCreated,
                &stored.definition,
                json!({}),
            )
            .await
        {
            if let Err(undo) = self
                .ports
                .definitions
                .delete(tenant, &stored.definition.slug)
                .await
            {
                warn!(error = %undo, report = %stored.definition.slug, "could not remove an unaudited definition");
            }
            return Err(err.into());
        }
        let runs = self.backfill(tenant, &stored.definition, actor).await;
        Ok(RollupChange { stored, runs })
    }

    /// Replaces the report `slug` of `tenant` with `body` (whose `slug`, when sent, must be
    /// `slug`). When what it computes changes (measures, dimensions, filters or windows), its
    /// snapshots are deleted, cached results retired and a backfill queued.
    ///
    /// # Errors
    /// [`RollupError::Invalid`], [`RollupError::BuiltIn`], [`RollupError::NotFound`], or a
    /// store error.
    pub async fn replace(
        &self,
        tenant: TenantId,
        slug: &str,
        body: &Value,
        actor: &Actor,
    ) -> Result<RollupChange, RollupError> {
        let slug = self.own_slug(slug)?;
        let mut body = body.clone();
        if let Some(object) = body.as_object_mut() {
            match object.get("slug") {
                None | Some(Value::Null) => {
                    object.insert("slug".to_owned(), Value::String(slug.to_string()));
                }
                Some(Value::String(sent)) if sent.trim() == slug.as_str() => {}
                Some(_) => {
                    return Err(ValidationError::new(
                        "slug",
                        format!("must be {slug}, the report of the path, when sent"),
                    )
                    .into());
                }
            }
        }
        let definition = RollupDefinition::parse(&body).map_err(RollupError::Invalid)?;
        let before = self
            .ports
            .definitions
            .get(tenant, &slug)
            .await?
            .ok_or_else(|| RollupError::NotFound(slug.to_string()))?;
        let stored = self
            .ports
            .definitions
            .replace(tenant, &definition, self.ports.clock.now())
            .await
            .map_err(|err| match err {
                DefinitionError::NotFound(slug) => RollupError::NotFound(slug),
                DefinitionError::Store(e) => e.into(),
                other => RollupError::Unexpected(other.into()),
            })?;
        let recomputed = computes_otherwise(&before.definition, &stored.definition);
        let runs = if recomputed {
            self.ports.rollups.remove(tenant, &slug).await?;
            self.retire(tenant, &slug).await;
            self.backfill(tenant, &stored.definition, actor).await
        } else {
            Vec::new()
        };
        self.audit_done(
            tenant,
            actor,
            AuditAction::ReportUpdated,
            &stored.definition,
            json!({"recomputed": recomputed}),
        )
        .await;
        Ok(RollupChange { stored, runs })
    }

    /// Deletes the report `slug` of `tenant`, its snapshots and cached results; its runs and
    /// audit entries stay.
    ///
    /// # Errors
    /// [`RollupError::BuiltIn`], [`RollupError::NotFound`], or a store error.
    pub async fn delete(
        &self,
        tenant: TenantId,
        slug: &str,
        actor: &Actor,
    ) -> Result<(), RollupError> {
        let slug = self.own_slug(slug)?;
        let stored = self
            .ports
            .definitions
            .get(tenant, &slug)
            .await?
            .ok_or_else(|| RollupError::NotFound(slug.to_string()))?;
        if !self.ports.definitions.delete(tenant, &slug).await? {
            return Err(RollupError::NotFound(slug.to_string()));
        }
        let rows = self.ports.rollups.remove(tenant, &slug).await?;
        self.retire(tenant, &slug).await;
        self.audit_done(
            tenant,
            actor,
            AuditAction::ReportDeleted,
            &stored.definition,
            json!({"snapshot_rows_deleted": rows}),
        )
        .await;
        Ok(())
    }

    /// The report `slug` of `tenant`.
    ///
    /// # Errors
    /// [`RollupError::NotFound`] (also for a malformed slug or a built-in report), or a store
    /// error.
    pub async fn get(&self, tenant: TenantId, slug: &str) -> Result<StoredRollup, RollupError> {
        let not_found = || RollupError::NotFound(slug.to_owned());
        let slug = ReportSlug::parse(slug).map_err(|_| not_found())?;
        self.ports
            .definitions
            .get(tenant, &slug)
            .await?
            .ok_or_else(not_found)
    }

    /// Every report `tenant` defined, by slug.
    ///
    /// # Errors
    /// A store error.
    pub async fn list(&self, tenant: TenantId) -> Result<Vec<StoredRollup>, RollupError> {
        Ok(self.ports.definitions.list(tenant).await?)
    }

    /// `raw` as the slug of a report a tenant may change: not a built-in's.
    fn own_slug(&self, raw: &str) -> Result<ReportSlug, RollupError> {
        let slug = ReportSlug::parse(raw).map_err(|_| RollupError::NotFound(raw.to_owned()))?;
        if is_builtin(&slug) {
            return Err(RollupError::BuiltIn(slug.to_string()));
        }
        Ok(slug)
    }

    /// Queues a run per window of `definition` over its retention, at most the longest range
    /// a recompute takes, ending today; all are pending before any is queued, so a worker
    /// rebuilds them in one pass. A run that cannot be queued is logged and skipped.
    async fn backfill(
        &self,
        tenant: TenantId,
        definition: &RollupDefinition,
        actor: &Actor,
    ) -> Vec<RecomputeRun> {
        let today = self.ports.clock.now().date();
        let mut requests = Vec::new();
        for window in &definition.windows {
            let days = window.retention_days.min(self.max_range_days).max(1);
            let from = today - Duration::days(i64::from(days) - 1);
            let Ok(range) = DateRange::new(from, today) else {
                continue;
            };
            requests.push(RecomputeRequest {
                tenant,
                report_slug: definition.slug.clone(),
                window: window.window,
                range,
                mode: RunMode::Full,
                requested_by: actor.clone(),
            });
        }
        let mut runs = Vec::new();
        for (request, queued) in requests
            .iter()
            .zip(self.recompute.queue_runs(&requests).await)
        {
            match queued {
                Ok(run) => runs.push(run),
                Err(err @ TriggerError::ScopeBusy { .. }) => {
                    warn!(report = %definition.slug, window = %request.window, error = %err, "backfill not queued: a run of the scope is active");
                }
                Err(err) => {
                    warn!(report = %definition.slug, window = %request.window, error = %err, "backfill not queued");
                }
            }
        }
        runs
    }

    /// Retires the cached results of `slug`; on failure they live out their TTL.
    async fn retire(&self, tenant: TenantId, slug: &ReportSlug) {
        if let Err(err) = self.ports.versions.bump(tenant, slug).await {
            warn!(error = %err, report = %slug, "could not retire cached results");
        }
    }

    /// Records a change to `definition`.
    async fn audit(
        &self,
        tenant: TenantId,
        actor: &Actor,
        action: AuditAction,
        definition: &RollupDefinition,
        mut metadata: Value,
    ) -> Result<(), StoreError> {
        if let Value::Object(fields) = &mut metadata {
            fields.insert("definition".to_owned(), definition.to_json());
        }
        let entry = NewAuditEntry {
            tenant,
            actor: actor.clone(),
            action,
            resource_type: RESOURCE_REPORT.to_owned(),
            resource_id: definition.slug.to_string(),
            metadata,
        };
        self.ports.audit.record(entry).await.map(|_| ())
    }

    /// Records a change already made, which stands whatever becomes of its audit entry: a
    /// failure is logged.
    async fn audit_done(
        &self,
        tenant: TenantId,
        actor: &Actor,
        action: AuditAction,
        definition: &RollupDefinition,
        metadata: Value,
    ) {
        if let Err(err) = self
            .audit(tenant, actor, action, definition, metadata)
            .await
        {
            warn!(error = %err, action = %action, report = %definition.slug, "could not audit a report change");
        }
    }
}

/// Whether `after` computes anything differently from `before`: its rollup, or the set of its
/// windows.
fn computes_otherwise(before: &RollupDefinition, after: &RollupDefinition) -> bool {
    let windows = |d: &RollupDefinition| {
        let mut windows: Vec<_> = d.windows.iter().map(|w| w.window).collect();
        windows.sort();
        windows
    };
    before.rollup != after.rollup || windows(before) != windows(after)
}

/// The parameters of a read of a tenant's report, as sent: every query parameter but `tenant`,
/// in order.
pub type RollupParams = [(String, String)];

/// A read of a tenant's report, served from the cache or the snapshots.
#[derive(Debug, Clone)]
pub struct RollupResult {
    pub definition: RollupDefinition,
    pub query: RollupQuery,
    /// The page read, shared with the cache that may hold it: its rows are the result's.
    pub page: Arc<CachedPage>,
    pub read: ReadInfo,
}

/// The read `params` ask of `definition` for `tenant`, on `today`, over at most
/// `max_range_days`.
///
/// # Errors
/// A [`ValidationError`] on the first parameter that breaks its rule: an unknown parameter, a
/// window the report lacks, bad dates or range, a `group_by` or `order` naming nothing of the
/// report, a filter value of more than 128 characters, a bad page.
pub fn parse_read(
    tenant: TenantId,
    definition: &RollupDefinition,
    params: &RollupParams,
    today: time::Date,
    max_range_days: u32,
) -> Result<RollupQuery, ValidationError> {
    let rollup = &definition.rollup;
    let mut single: std::collections::BTreeMap<&str, &str> = std::collections::BTreeMap::new();
    let mut filters = Vec::new();
    for (name, value) in params {
        let name = name.as_str();
        if name == "tenant" {
            continue;
        }
        if single.insert(name, value.as_str()).is_some() {
            return Err(ValidationError::new(name, "may be sent once"));
        }
        if domain::rollup::READ_PARAMETERS.contains(&name) {
            continue;
        }
        let Some(position) = rollup.dimensions.iter().position(|d| d.name == name) else {
            let dimensions: Vec<&str> = rollup.dimensions.iter().map(|d| d.name.as_str()).collect();
            return Err(ValidationError::new(
                name,
                format!(
                    "is not a parameter of {} (parameters: {}{}{})",
                    definition.slug,
                    domain::rollup::READ_PARAMETERS.join(", "),
                    if dimensions.is_empty() {
                        ""
                    } else {
                        ", and its dimensions "
                    },
                    dimensions.join(", ")
                ),
            ));
        };
        filters.push((position, domain::rollup::filter_text(name, value)?));
    }
    filters.sort();

    let window = match single.get("window") {
        Some(raw) => raw.parse::<Window>()?,
        None => definition.default_window(),
    };
    definition.check_window(window)?;
    let from = single
        .get("date_from")
        .map(|raw| parse_date("date_from", raw))
        .transpose()?;
    let to = single
        .get("date_to")
        .map(|raw| parse_date("date_to", raw))
        .transpose()?;
    let range = DateRange::resolve(from, to, today)?.within_limit(max_range_days)?;
    definition.check_retention(window, range, today)?;

    let (by_period, dimensions) = match single.get("group_by") {
        None => (true, (0..rollup.dimensions.len()).collect::<Vec<_>>()),
        // Empty: grouped by nothing, one row for the whole range.
        Some(raw) if raw.trim().is_empty() => (false, Vec::new()),
        Some(raw) => {
            let mut by_period = false;
            let mut dimensions = Vec::new();
            for part in raw.split(',').map(str::trim) {
                if part == "period" {
                    by_period = true;
                } else if let Some(position) = rollup.dimensions.iter().position(|d| d.name == part)
                {
                    dimensions.push(position);
                } else {
                    let names: Vec<&str> = std::iter::once("period")
                        .chain(rollup.dimensions.iter().map(|d| d.name.as_str()))
                        .collect();
                    return Err(ValidationError::new(
                        "group_by",
                        format!(
                            "must be a comma list of: {}; got {part:?}",
                            names.join(", ")
                        ),
                    ));
                }
            }
            dimensions.sort_unstable();
            dimensions.dedup();
            (by_period, dimensions)
        }
    };
    let order = match single.get("order").map(|raw| raw.trim()) {
        None if by_period => RollupOrder::Period,
        None => RollupOrder::MeasureDescending(0),
        Some("period") if by_period => RollupOrder::Period,
        Some(raw) => match raw
            .strip_prefix('-')
            .and_then(|name| rollup.measures.iter().position(|m| m.name == name))
        {
            Some(position) => RollupOrder::MeasureDescending(position),
            None => {
                let mut allowed: Vec<String> = rollup
                    .measures
                    .iter()
                    .map(|m| format!("-{}", m.name))
                    .collect();
                if by_period {
                    allowed.insert(0, "period".to_owned());
                }
                return Err(ValidationError::new(
                    "order",
                    format!("must be one of: {}; got {raw:?}", allowed.join(", ")),
                ));
            }
        },
    };
    let page = PageRequest::strict(
        single.get("limit").copied(),
        single.get("offset").copied(),
        crate::reports::DEFAULT_ROW_LIMIT,
    )?;
    Ok(RollupQuery {
        tenant,
        report: definition.slug.clone(),
        window,
        range,
        measures: rollup.measures.iter().map(|m| m.kind.combine()).collect(),
        by_period,
        dimensions,
        filters,
        order,
        page,
        coarser: definition.windows_kept_over(range, today, max_range_days),
    })
}

impl RollupService {
    /// Reads the tenant's report `slug` as `params` ask: from the cache when it holds the
    /// result for the report's current version, else from the snapshots (then cached for the
    /// report's `cache_ttl_seconds`). With `public_only`, a report not marked `is_public` is
    /// not found.
    ///
    /// # Errors
    /// [`RollupError::NotFound`], [`RollupError::Invalid`] for a bad parameter, or a store error
    /// when the snapshots cannot be read. Cache failures are never errors.
    pub async fn read(
        &self,
        tenant: TenantId,
        slug: &str,
        params: &RollupParams,
        public_only: bool,
    ) -> Result<RollupResult, RollupError> {
        let started = std::time::Instant::now();
        let definition = self.get(tenant, slug).await?.definition;
        if public_only && !definition.is_public {
            return Err(RollupError::NotFound(slug.to_owned()));
        }
        let now = self.ports.clock.now();
        let query = parse_read(tenant, &definition, params, now.date(), self.max_range_days)?;
        let mut served = self
            .ports
            .reads
            .read(&query, definition.cache_ttl_seconds)
            .await?;
        Ok(RollupResult {
            read: ReadInfo::of(&mut served, crate::elapsed_ms(started)),
            page: served.page,
            definition,
            query,
        })
    }
}
