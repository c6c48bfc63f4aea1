//! [`CacheVersions`]: versions start at 0 and bump by one, per tenant and report.
//!
//! Adapters may remember versions they read (see [`CacheVersions::known`]), so where it matters
//! a promise reads a version before bumping it, as a cache miss does before a rebuild bumps.

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

/// Reads the tenant's status counts version (0), then bumps it once; the report.
async fn read_then_bumped(f: &Fixture) -> Result<ReportSlug> {
    let status = status_counts()?;
    f.versions.current(f.tenant, &status).await?;
    f.versions.bump(f.tenant, &status).await?;
    Ok(status)
}

/// As [`read_then_bumped`], bumped twice.
async fn read_then_bumped_twice(f: &Fixture) -> Result<ReportSlug> {
    let status = read_then_bumped(f).await?;
    f.versions.bump(f.tenant, &status).await?;
    Ok(status)
}

pub async fn a_report_starts_at_version_zero(f: &Fixture) -> Result<()> {
    ensure!(
        f.versions.current(f.tenant, &status_counts()?).await? == 0,
        "a report starts at version 0"
    );
    Ok(())
}

pub async fn the_first_bump_gives_one(f: &Fixture) -> Result<()> {
    let status = status_counts()?;
    f.versions.current(f.tenant, &status).await?;
    ensure!(
        f.versions.bump(f.tenant, &status).await? == 1,
        "the first bump gives 1"
    );
    Ok(())
}

pub async fn bumps_count_up(f: &Fixture) -> Result<()> {
    let status = read_then_bumped(f).await?;
    ensure!(
        f.versions.bump(f.tenant, &status).await? == 2,
        "bumps count up"
    );
    Ok(())
}

pub async fn current_reads_the_last_bump(f: &Fixture) -> Result<()> {
    let status = read_then_bumped_twice(f).await?;
    ensure!(
        f.versions.current(f.tenant, &status).await? == 2,
        "current reads the last bump"
    );
    Ok(())
}

pub async fn what_is_known_without_asking_is_what_current_reads(f: &Fixture) -> Result<()> {
    let status = read_then_bumped_twice(f).await?;
    let current = f.versions.current(f.tenant, &status).await?;
    ensure!(
        f.versions
            .known(f.tenant, &status)
            .is_none_or(|known| known == current),
        "what is known without asking is what current reads"
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
    let status = read_then_bumped_twice(f).await?;
    ensure!(
        f.versions.current(f.other, &status).await? == 0,
        "tenants have their own versions"
    );
    Ok(())
}

pub async fn what_is_known_of_another_tenant_is_its_own_version(f: &Fixture) -> Result<()> {
    let status = read_then_bumped_twice(f).await?;
    f.versions.current(f.other, &status).await?;
    ensure!(
        f.versions
            .known(f.other, &status)
            .is_none_or(|known| known == 0),
        "what is known of another tenant is its own version"
    );
    Ok(())
}
