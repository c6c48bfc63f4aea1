//! [`CacheVersions`]: versions start at 0 and every bump moves them up (by how much is the
//! adapter's: a counter that may lose its data moves to a clock), per tenant and report.
//!
//! Adapters may remember versions they read, so where it matters a promise reads a version
//! before bumping it, as a cache miss does before a rebuild bumps.

use std::sync::Arc;

use anyhow::{Result, ensure};
use domain::{ReportSlug, TenantId};

use super::slug;
use crate::ports::CacheVersions;

/// Cache versions with nothing bumped for `tenant` and `other`.
pub struct Fixture {
    pub versions: Arc<dyn CacheVersions>,
    pub tenant: TenantId,
    pub other: TenantId,
}

fn status_counts() -> Result<ReportSlug> {
    slug("status-counts")
}

/// Reads the tenant's status counts version (0), then bumps it once; the report and the
/// version the bump gave.
async fn read_then_bumped(f: &Fixture) -> Result<(ReportSlug, u64)> {
    let status = status_counts()?;
    f.versions.current(f.tenant, &status).await?;
    let version = f.versions.bump(f.tenant, &status).await?;
    Ok((status, version))
}

/// As [`read_then_bumped`], bumped twice.
async fn read_then_bumped_twice(f: &Fixture) -> Result<(ReportSlug, u64)> {
    let (status, _) = read_then_bumped(f).await?;
    let version = f.versions.bump(f.tenant, &status).await?;
    Ok((status, version))
}

pub async fn a_report_starts_at_version_zero(f: &Fixture) -> Result<()> {
    ensure!(
        f.versions.current(f.tenant, &status_counts()?).await? == 0,
        "a report starts at version 0"
    );
    Ok(())
}

pub async fn the_first_bump_moves_above_zero(f: &Fixture) -> Result<()> {
    let (_, first) = read_then_bumped(f).await?;
    ensure!(first > 0, "the first bump moves above 0");
    Ok(())
}

pub async fn bumps_count_up(f: &Fixture) -> Result<()> {
    let (status, first) = read_then_bumped(f).await?;
    ensure!(
        f.versions.bump(f.tenant, &status).await? > first,
        "bumps count up"
    );
    Ok(())
}

pub async fn current_reads_the_last_bump(f: &Fixture) -> Result<()> {
    let (status, last) = read_then_bumped_twice(f).await?;
    ensure!(
        f.versions.current(f.tenant, &status).await? == last,
        "current reads the last bump"
    );
    Ok(())
}

pub async fn reports_have_their_own_versions(f: &Fixture) -> Result<()> {
    read_then_bumped_twice(f).await?;
    ensure!(
        f.versions.current(f.tenant, &slug("top-entities")?).await? == 0,
        "reports have their own versions"
    );
    Ok(())
}

pub async fn tenants_have_their_own_versions(f: &Fixture) -> Result<()> {
    let (status, _) = read_then_bumped_twice(f).await?;
    ensure!(
        f.versions.current(f.other, &status).await? == 0,
        "tenants have their own versions"
    );
    Ok(())
}

pub async fn a_version_read_again_is_still_its_own_tenants(f: &Fixture) -> Result<()> {
    let (status, last) = read_then_bumped_twice(f).await?;
    for _ in 0..2 {
        ensure!(
            f.versions.current(f.other, &status).await? == 0
                && f.versions.current(f.tenant, &status).await? == last,
            "a version read again is still its own tenant's"
        );
    }
    Ok(())
}
