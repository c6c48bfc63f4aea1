//! `backfill`: rebuilds a report over a range of any length, window by window, in runs of a
//! few dozen buckets each (every one admitted, locked and audited as the API's), with a
//! progress bar on a terminal and plain log lines otherwise. `recompute` shows the same bar
//! for its single run.

use std::{
    io::IsTerminal,
    time::{Duration, Instant},
};

use anyhow::Context;
use application::{RecomputeRequest, Services};
use domain::{
    Actor, DateRange, RecomputeRun, ReportKind, ReportSlug, RunMode, RunStatus, TenantId,
    TenantSlug, Window, dates::format_date, parse_date,
};
use indicatif::{ProgressBar, ProgressStyle};
use tracing::info;

/// What `backfill` is asked to rebuild.
#[derive(Debug, Clone)]
pub struct BackfillArgs {
    pub report: String,
    pub from: String,
    pub to: String,
    pub mode: Option<String>,
    /// One window; every window of the report when `None`.
    pub window: Option<String>,
    pub tenant: Option<String>,
    pub requested_by: Option<String>,
}

/// How many days one run of a backfill covers in each window: a few dozen buckets, so
/// progress moves and a failure loses little.
fn chunk_days(window: Window) -> i64 {
    match window {
        Window::Hour => 2,
        Window::Day => 31,
        Window::Week => 7 * 12,
        Window::Month => 366,
    }
}

/// The whole-bucket pieces of `range` in `window`, in order.
fn chunks(window: Window, range: DateRange) -> Vec<DateRange> {
    let whole = window.widen(range);
    let mut pieces = Vec::new();
    let mut start = whole.from();
    while start <= whole.to() {
        let last = (start + time::Duration::days(chunk_days(window) - 1)).min(whole.to());
        let end = window.bucket_end(last).min(whole.to());
        pieces.push(DateRange::new(start, end).unwrap_or(whole));
        let Some(next) = end.next_day() else { break };
        start = next;
    }
    pieces
}

/// Where progress goes: a bar on a terminal, log lines otherwise.
enum Progress {
    Bar(ProgressBar),
    Lines {
        total: u64,
        done: u64,
        started: Instant,
    },
}

impl Progress {
    fn new(total: u64) -> Self {
        if std::io::stderr().is_terminal() {
            let bar = ProgressBar::new(total);
            if let Ok(style) = ProgressStyle::with_template(
                "{msg:24} [{bar:30}] {pos}/{len} buckets, {per_sec}, ETA {eta}",
            ) {
                bar.set_style(style.progress_chars("=> "));
            }
            bar.enable_steady_tick(Duration::from_millis(200));
            Self::Bar(bar)
        } else {
            Self::Lines {
                total,
                done: 0,
                started: Instant::now(),
            }
        }
    }

    fn working_on(&self, what: &str) {
        if let Self::Bar(bar) = self {
            bar.set_message(what.to_owned());
        }
    }

    fn advance(&mut self, what: &str, buckets: u64) {
        match self {
            Self::Bar(bar) => bar.inc(buckets),
            Self::Lines {
                total,
                done,
                started,
            } => {
                *done += buckets;
                let elapsed = started.elapsed().as_secs_f64().max(0.001);
                let rate = *done as f64 / elapsed;
                let eta = if rate > 0.0 {
                    (*total).saturating_sub(*done) as f64 / rate
                } else {
                    0.0
                };
                info!(
                    what,
                    buckets,
                    done = *done,
                    total = *total,
                    buckets_per_s = format!("{rate:.1}"),
                    eta_s = format!("{eta:.0}"),
                    "backfill progress"
                );
            }
        }
    }

    fn finish(&self) {
        if let Self::Bar(bar) = self {
            bar.finish_with_message("done");
        }
    }
}

/// The buckets a run will rebuild, for the bar's length: all of its range's, or its dirty
/// ones.
async fn buckets_of(
    services: &Services,
    tenant: TenantId,
    report: &ReportSlug,
    window: Window,
    range: DateRange,
    mode: RunMode,
) -> anyhow::Result<u64> {
    Ok(match mode {
        RunMode::Full => u64::from(window.bucket_count(range)),
        RunMode::Incremental => {
            let dirty = services
                .ports
                .rollups
                .dirty(tenant, report, window, range)
                .await?;
            let per = if window.is_hourly() { 24 } else { 1 };
            dirty.len() as u64 * per
        }
    })
}

/// Runs `request` now, in this process, as `recompute` and `backfill` do; an error unless it
/// completed.
async fn run_now(services: &Services, request: &RecomputeRequest) -> anyhow::Result<RecomputeRun> {
    let finished = services.recompute.run_now(request).await?;
    match (finished.status, &finished.summary) {
        (RunStatus::Completed, Some(_)) => Ok(finished),
        _ => Err(anyhow::anyhow!(
            "run {} {}: {}",
            finished.id,
            finished.status,
            finished.error_message.clone().unwrap_or_default()
        ))
        .context("the run did not complete"),
    }
}

/// `backfill`: see the module documentation.
///
/// # Errors
/// When an argument is invalid, the report or tenant is unknown, or a run fails (the runs
/// before it stay completed; running the same backfill again redoes the rest).
pub async fn backfill(services: &Services, args: BackfillArgs) -> anyhow::Result<()> {
    let tenant = match args.tenant.as_deref() {
        None => TenantId::DEFAULT,
        Some(raw) => {
            let slug = TenantSlug::parse("tenant", raw)?;
            services
                .ports
                .tenants
                .find(&slug)
                .await?
                .with_context(|| format!("no tenant {slug}"))?
                .id
        }
    };
    let report = ReportSlug::parse(&args.report).map_err(|e| anyhow::anyhow!("--report: {e}"))?;
    let range = DateRange::new(parse_date("from", &args.from)?, parse_date("to", &args.to)?)?;
    let mode = match args.mode.as_deref() {
        Some(raw) => raw.parse::<RunMode>()?,
        None => RunMode::Full,
    };
    let definition = match ReportKind::from_slug(&report) {
        Some(kind) => domain::rollup::builtin(kind).clone(),
        None => {
            services
                .rollups
                .get(tenant, report.as_str())
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?
                .definition
        }
    };
    let windows: Vec<Window> = match args.window.as_deref() {
        Some(raw) => vec![definition.check_window(raw.parse::<Window>()?)?],
        None => definition.windows.iter().map(|w| w.window).collect(),
    };
    let requested_by = Actor::parse(args.requested_by.as_deref().unwrap_or("cli"))?;

    let mut plan = Vec::new();
    let mut total = 0;
    for window in windows {
        for piece in chunks(window, range) {
            let buckets = buckets_of(services, tenant, &report, window, piece, mode).await?;
            if mode == RunMode::Incremental && buckets == 0 {
                continue;
            }
            total += buckets;
            plan.push((window, piece));
        }
    }
    info!(report = %report, runs = plan.len(), buckets = total, mode = %mode, "backfill planned");
    let mut progress = Progress::new(total);
    let started = Instant::now();
    let (mut rows, mut buckets_done) = (0, 0);
    for (window, piece) in plan {
        let what = format!(
            "{window} {}..{}",
            format_date(piece.from()),
            format_date(piece.to())
        );
        progress.working_on(&what);
        let run = run_now(
            services,
            &RecomputeRequest {
                tenant,
                report_slug: report.clone(),
                window,
                range: piece,
                mode,
                requested_by: requested_by.clone(),
            },
        )
        .await?;
        let summary = run
            .summary
            .unwrap_or_else(|| unreachable!("run_now checked it"));
        rows += summary.rows_inserted;
        buckets_done += u64::from(summary.bucket_count);
        progress.advance(&what, u64::from(summary.bucket_count));
    }
    progress.finish();
    let mut out = std::io::stdout().lock();
    use std::io::Write as _;
    writeln!(
        out,
        "backfill of {report} ({mode}) completed: {buckets_done} buckets, {rows} rows in {:.1}s",
        started.elapsed().as_secs_f64()
    )?;
    Ok(())
}

/// Shows a spinner (on a terminal) while `recompute`'s single run executes.
pub fn spinner(what: &str) -> Option<ProgressBar> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = ProgressBar::new_spinner();
    if let Ok(style) = ProgressStyle::with_template("{spinner} {msg} ({elapsed})") {
        bar.set_style(style);
    }
    bar.set_message(what.to_owned());
    bar.enable_steady_tick(Duration::from_millis(120));
    Some(bar)
}

#[cfg(test)]
mod tests {
    use time::macros::date;

    use super::*;

    #[test]
    fn a_range_is_cut_into_whole_buckets_in_order() {
        let range = DateRange::new(date!(2026 - 01 - 07), date!(2026 - 03 - 10))
            .unwrap_or_else(|_| unreachable!());
        let days = chunks(Window::Day, range);
        assert_eq!(days.first().map(|r| r.from()), Some(date!(2026 - 01 - 07)));
        assert_eq!(days.last().map(|r| r.to()), Some(date!(2026 - 03 - 10)));
        assert!(
            days.windows(2)
                .all(|w| w[0].to().next_day() == Some(w[1].from()))
        );
        assert!(days.iter().all(|r| r.days() <= 31));
        let weeks = chunks(Window::Week, range);
        assert_eq!(
            weeks.first().map(|r| r.from()),
            Some(date!(2026 - 01 - 05)),
            "a Monday"
        );
        assert_eq!(
            weeks.last().map(|r| r.to()),
            Some(date!(2026 - 03 - 15)),
            "a Sunday"
        );
        let months = chunks(Window::Month, range);
        assert_eq!(months.len(), 1);
        assert_eq!(months[0].to(), date!(2026 - 03 - 31));
    }
}
