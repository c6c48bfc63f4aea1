//! [`ReportCatalog`]: the three reference reports, listed with search, sort and pages.

use std::sync::Arc;

use anyhow::{Context, Result, ensure};
use domain::{
    CatalogQuery, CatalogSort, Page, PageRequest, ReportDefinition, ReportKind, SortOrder, Window,
};

use super::slug;
use crate::ports::ReportCatalog;

/// A catalog holding the reference reports and nothing else.
pub struct Fixture {
    pub catalog: Arc<dyn ReportCatalog>,
}

/// The public reports matching `search`, sorted by `sort` in `order`, one `page`.
async fn list(
    f: &Fixture,
    search: Option<&str>,
    sort: CatalogSort,
    order: SortOrder,
    page: PageRequest,
) -> Result<Page<ReportDefinition>> {
    Ok(f.catalog
        .list_public(&CatalogQuery::new(search, sort, order, page)?)
        .await?)
}

/// The first page of every public report, by slug.
async fn all_by_slug(f: &Fixture) -> Result<Page<ReportDefinition>> {
    list(
        f,
        None,
        CatalogSort::Slug,
        SortOrder::Asc,
        PageRequest::new(20, 0),
    )
    .await
}

pub async fn the_reference_reports_are_listed_by_slug(f: &Fixture) -> Result<()> {
    let all = all_by_slug(f).await?;
    let slugs: Vec<&str> = all.items.iter().map(|r| r.slug.as_str()).collect();
    ensure!(
        slugs == ["status-counts", "top-entities", "volume-by-period"],
        "reference reports by slug, got {slugs:?}"
    );
    Ok(())
}

pub async fn the_total_counts_every_match(f: &Fixture) -> Result<()> {
    let all = all_by_slug(f).await?;
    ensure!(
        all.total == 3,
        "total counts every match, got {}",
        all.total
    );
    Ok(())
}

pub async fn reports_sort_by_cache_ttl_descending(f: &Fixture) -> Result<()> {
    let by_ttl = list(
        f,
        None,
        CatalogSort::CacheTtlSeconds,
        SortOrder::Desc,
        PageRequest::new(20, 0),
    )
    .await?;
    let ttls: Vec<u32> = by_ttl.items.iter().map(|r| r.cache_ttl_seconds).collect();
    ensure!(
        ttls == [120, 90, 45],
        "sorted by cache TTL descending, got {ttls:?}"
    );
    Ok(())
}

pub async fn search_is_a_case_insensitive_substring(f: &Fixture) -> Result<()> {
    let search = list(
        f,
        Some("ENTIT"),
        CatalogSort::Name,
        SortOrder::Asc,
        PageRequest::new(20, 0),
    )
    .await?;
    ensure!(
        search.total == 1
            && search
                .items
                .first()
                .is_some_and(|r| r.slug.as_str() == "top-entities"),
        "search is a case-insensitive substring"
    );
    Ok(())
}

pub async fn search_matches_names_too(f: &Fixture) -> Result<()> {
    let by_name = list(
        f,
        Some("counts"),
        CatalogSort::Name,
        SortOrder::Asc,
        PageRequest::new(20, 0),
    )
    .await?;
    ensure!(by_name.total == 1, "search matches names too");
    Ok(())
}

pub async fn a_page_still_reports_the_full_total(f: &Fixture) -> Result<()> {
    let second = list(
        f,
        None,
        CatalogSort::Slug,
        SortOrder::Asc,
        PageRequest::new(1, 1),
    )
    .await?;
    ensure!(second.total == 3, "a page still reports the full total");
    Ok(())
}

pub async fn limit_one_offset_one_is_the_second_report(f: &Fixture) -> Result<()> {
    let second = list(
        f,
        None,
        CatalogSort::Slug,
        SortOrder::Asc,
        PageRequest::new(1, 1),
    )
    .await?;
    ensure!(
        second.items.len() == 1 && second.items[0].slug.as_str() == "top-entities",
        "limit 1 offset 1 is the second report"
    );
    Ok(())
}

pub async fn every_reference_report_matches_its_reference_definition(f: &Fixture) -> Result<()> {
    for kind in ReportKind::ALL {
        let stored = f
            .catalog
            .get(&kind.report_slug())
            .await?
            .context("every reference report exists")?;
        let mut reference = ReportDefinition::reference(kind, stored.updated_at);
        reference.updated_at = stored.updated_at;
        ensure!(
            stored == reference,
            "{} matches the reference definition: {stored:?}",
            kind.slug()
        );
    }
    Ok(())
}

async fn volume_by_period(f: &Fixture) -> Result<ReportDefinition> {
    f.catalog
        .get(&slug("volume-by-period")?)
        .await?
        .context("volume-by-period exists")
}

pub async fn volume_by_period_is_read_by_slug_with_its_kind_and_default_window(
    f: &Fixture,
) -> Result<()> {
    let volume = volume_by_period(f).await?;
    ensure!(
        volume.kind == ReportKind::VolumeByPeriod && volume.default_window == Window::Day,
        "reference definition"
    );
    Ok(())
}

pub async fn volume_by_period_allows_days_and_weeks(f: &Fixture) -> Result<()> {
    let volume = volume_by_period(f).await?;
    ensure!(
        volume.allows(Window::Day) && volume.allows(Window::Week),
        "both windows allowed"
    );
    Ok(())
}

pub async fn a_window_keeps_its_retention_and_refresh_interval(f: &Fixture) -> Result<()> {
    let volume = volume_by_period(f).await?;
    let week = volume
        .windows
        .iter()
        .find(|w| w.window == Window::Week)
        .context("week window")?;
    ensure!(
        week.retention_days == 730 && week.refresh_interval_minutes == 240,
        "week window settings"
    );
    Ok(())
}

pub async fn an_unknown_slug_is_none(f: &Fixture) -> Result<()> {
    ensure!(
        f.catalog.get(&slug("no-such-report")?).await?.is_none(),
        "an unknown slug is None"
    );
    Ok(())
}
