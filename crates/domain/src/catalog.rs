//! The report catalog: definitions, their windows, and how a listing is sorted.

use std::str::FromStr;

use serde::{Deserialize, Serialize};
use serde_json::json;
use time::OffsetDateTime;

use crate::{Breakdown, PageRequest, ReportKind, ReportSlug, ValidationError, Window};

/// A window a report may be read in, with its operational settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowDefinition {
    pub window: Window,
    /// How far back snapshots of this window are kept.
    pub retention_days: u32,
    /// How often a scheduler should refresh this window.
    pub refresh_interval_minutes: u32,
    pub is_default: bool,
}

impl WindowDefinition {
    /// The whole buckets this window keeps on `today`: those holding any of the last
    /// `retention_days` days up to `today`. Older buckets are expired.
    pub fn kept(&self, today: time::Date) -> crate::DateRange {
        let back = time::Duration::days(i64::from(self.retention_days.max(1)) - 1);
        let first = today.checked_sub(back).unwrap_or(time::Date::MIN);
        self.window
            .widen(crate::DateRange::from_ordered(first, today))
    }
}

/// A report of the catalog.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportDefinition {
    pub slug: ReportSlug,
    pub kind: ReportKind,
    pub name: String,
    pub description: String,
    /// How long a cached result may be served; 0 disables caching.
    pub cache_ttl_seconds: u32,
    pub default_window: Window,
    pub is_public: bool,
    /// The allowed windows, in catalog order.
    pub windows: Vec<WindowDefinition>,
    pub supported_filters: serde_json::Value,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

impl ReportDefinition {
    /// Whether the report may be read in `window`.
    pub fn allows(&self, window: Window) -> bool {
        self.windows.iter().any(|w| w.window == window)
    }

    /// Checks that the report may be read or rebuilt in `window`.
    ///
    /// # Errors
    /// A [`ValidationError`] on `window` naming the report's windows.
    pub fn check_window(&self, window: Window) -> Result<Window, ValidationError> {
        check_window(&self.slug, &self.windows, window)
    }

    /// Checks that a read of `window` over `range` on `today` asks for some kept bucket.
    ///
    /// # Errors
    /// As [`check_retention`].
    pub fn check_retention(
        &self,
        window: Window,
        range: crate::DateRange,
        today: time::Date,
    ) -> Result<(), ValidationError> {
        check_retention(&self.windows, window, range, today)
    }

    /// The reference definition of `kind`: its seed file (`seeds/reports/<slug>.json`, built
    /// into the binary) for what a catalog entry says (name, description, cache TTL, windows,
    /// public), and the report's shape for its breakdowns and filters. Migrating a database
    /// writes these entries into its catalog.
    ///
    /// # Panics
    /// As [`crate::rollup::builtin`], when a seed file is not a valid definition.
    pub fn reference(kind: ReportKind, updated_at: OffsetDateTime) -> Self {
        let seed = crate::rollup::builtin(kind);
        let breakdowns: Vec<&str> = Breakdown::allowed_for(kind)
            .iter()
            .map(|b| b.as_str())
            .collect();
        let filters: Vec<&str> = match kind {
            ReportKind::VolumeByPeriod => vec!["source"],
            ReportKind::StatusCounts => vec!["status"],
            ReportKind::TopEntities => vec![],
        };
        Self {
            slug: kind.report_slug(),
            kind,
            name: seed.name.as_str().to_owned(),
            description: seed.description.as_str().to_owned(),
            cache_ttl_seconds: seed.cache_ttl_seconds,
            default_window: seed.default_window(),
            is_public: seed.is_public,
            windows: seed.windows.clone(),
            supported_filters: json!({
                "breakdown": breakdowns,
                "filters": filters,
            }),
            updated_at,
        }
    }
}

/// Checks that `window` is one of `windows`, those of the report `slug`.
///
/// # Errors
/// A [`ValidationError`] on `window` naming the report's windows.
/// Checks that `range` reaches a bucket `window` (one of `windows`) keeps on `today`: a range
/// entirely before the window's retention could only read buckets already deleted.
///
/// # Errors
/// A [`ValidationError`] on `date_from` naming the first day kept.
pub fn check_retention(
    windows: &[WindowDefinition],
    window: Window,
    range: crate::DateRange,
    today: time::Date,
) -> Result<(), ValidationError> {
    let Some(definition) = windows.iter().find(|w| w.window == window) else {
        return Ok(());
    };
    let kept = definition.kept(today);
    if range.to() >= kept.from() {
        return Ok(());
    }
    Err(ValidationError::new(
        "date_from",
        format!(
            "the range ends before the {window} buckets kept: they are kept {} days, from {}",
            definition.retention_days,
            crate::dates::format_date(kept.from())
        ),
    ))
}

pub fn check_window(
    slug: &ReportSlug,
    windows: &[WindowDefinition],
    window: Window,
) -> Result<Window, ValidationError> {
    if windows.iter().any(|w| w.window == window) {
        return Ok(window);
    }
    let names: Vec<&str> = windows.iter().map(|w| w.window.as_str()).collect();
    Err(ValidationError::new(
        "window",
        format!(
            "must be one of: {} (the windows of {slug})",
            names.join(", ")
        ),
    ))
}

/// The column a catalog listing is sorted by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum CatalogSort {
    #[default]
    Slug,
    Name,
    UpdatedAt,
    CacheTtlSeconds,
}

impl CatalogSort {
    const ALL: [CatalogSort; 4] = [
        CatalogSort::Slug,
        CatalogSort::Name,
        CatalogSort::UpdatedAt,
        CatalogSort::CacheTtlSeconds,
    ];

    /// The parameter value naming this column.
    pub const fn as_str(self) -> &'static str {
        match self {
            CatalogSort::Slug => "slug",
            CatalogSort::Name => "name",
            CatalogSort::UpdatedAt => "updated_at",
            CatalogSort::CacheTtlSeconds => "cache_ttl_seconds",
        }
    }
}

impl FromStr for CatalogSort {
    type Err = ValidationError;

    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|sort| sort.as_str().eq_ignore_ascii_case(raw.trim()))
            .ok_or_else(|| {
                ValidationError::new(
                    "sort",
                    format!(
                        "must be one of: slug, name, updated_at, cache_ttl_seconds; got {raw:?}"
                    ),
                )
            })
    }
}

/// Ascending or descending.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum SortOrder {
    #[default]
    Asc,
    Desc,
}

impl FromStr for SortOrder {
    type Err = ValidationError;

    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        match raw.trim().to_ascii_lowercase().as_str() {
            "asc" => Ok(SortOrder::Asc),
            "desc" => Ok(SortOrder::Desc),
            _ => Err(ValidationError::new(
                "order",
                format!("must be asc or desc; got {raw:?}"),
            )),
        }
    }
}

/// What a catalog listing sorts by.
pub trait Listed {
    fn slug(&self) -> &str;
    fn name(&self) -> &str;
    fn updated_at(&self) -> OffsetDateTime;
    fn cache_ttl_seconds(&self) -> u32;
}

impl Listed for ReportDefinition {
    fn slug(&self) -> &str {
        self.slug.as_str()
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn updated_at(&self) -> OffsetDateTime {
        self.updated_at
    }

    fn cache_ttl_seconds(&self) -> u32 {
        self.cache_ttl_seconds
    }
}

/// The longest `search` term accepted.
pub const MAX_SEARCH_LEN: usize = 100;

/// A catalog listing: an optional case-insensitive substring of slug or name, a sort and a page.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CatalogQuery {
    search: Option<String>,
    pub sort: CatalogSort,
    pub order: SortOrder,
    pub page: PageRequest,
}

impl CatalogQuery {
    /// A listing; a blank `search` means no search.
    ///
    /// # Errors
    /// A [`ValidationError`] on `search` when it is longer than [`MAX_SEARCH_LEN`] characters
    /// or has a control character (PostgreSQL cannot even compare text holding U+0000).
    pub fn new(
        search: Option<&str>,
        sort: CatalogSort,
        order: SortOrder,
        page: PageRequest,
    ) -> Result<Self, ValidationError> {
        let search = search.map(str::trim).filter(|s| !s.is_empty());
        if let Some(term) = search
            && (term.chars().count() > MAX_SEARCH_LEN || term.chars().any(char::is_control))
        {
            return Err(ValidationError::new(
                "search",
                format!("must be at most {MAX_SEARCH_LEN} printable characters"),
            ));
        }
        Ok(Self {
            search: search.map(str::to_owned),
            sort,
            order,
            page,
        })
    }

    /// The search term, trimmed, if any.
    pub fn search(&self) -> Option<&str> {
        self.search.as_deref()
    }

    /// Whether `report` matches the search term (case-insensitive substring of slug or name).
    pub fn matches(&self, report: &ReportDefinition) -> bool {
        self.matches_text(report.slug.as_str(), &report.name)
    }

    /// Whether a report of `slug` and `name` matches the search.
    pub fn matches_text(&self, slug: &str, name: &str) -> bool {
        self.search.as_deref().is_none_or(|term| {
            let term = term.to_lowercase();
            slug.to_lowercase().contains(&term) || name.to_lowercase().contains(&term)
        })
    }

    /// How `a` and `b` are ordered in the listing: by the sort column in the query's
    /// direction, ties by slug ascending whatever the direction; text by byte value.
    pub fn compare(&self, a: &impl Listed, b: &impl Listed) -> std::cmp::Ordering {
        let primary = match self.sort {
            CatalogSort::Slug => a.slug().cmp(b.slug()),
            CatalogSort::Name => a.name().cmp(b.name()),
            CatalogSort::UpdatedAt => a.updated_at().cmp(&b.updated_at()),
            CatalogSort::CacheTtlSeconds => a.cache_ttl_seconds().cmp(&b.cache_ttl_seconds()),
        };
        let primary = match self.order {
            SortOrder::Asc => primary,
            SortOrder::Desc => primary.reverse(),
        };
        primary.then_with(|| a.slug().cmp(b.slug()))
    }

    /// The same listing, paged by `page`.
    #[must_use]
    pub fn with_page(&self, page: PageRequest) -> Self {
        Self {
            search: self.search.clone(),
            sort: self.sort,
            order: self.order,
            page,
        }
    }
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    #[test]
    fn sort_accepts_only_allowlisted_columns() {
        assert_eq!(
            "updated_at".parse::<CatalogSort>(),
            Ok(CatalogSort::UpdatedAt)
        );
        let err = "id; drop table".parse::<CatalogSort>().unwrap_err();
        assert_eq!(err.field(), "sort");
        assert!(
            err.message().contains("cache_ttl_seconds"),
            "message: {err}"
        );
    }

    #[test]
    fn order_is_asc_or_desc() {
        assert_eq!("DESC".parse::<SortOrder>(), Ok(SortOrder::Desc));
        assert!("down".parse::<SortOrder>().is_err());
    }

    #[test]
    fn sort_columns_parse_in_any_case() {
        assert_eq!(
            "Updated_At".parse::<CatalogSort>(),
            Ok(CatalogSort::UpdatedAt)
        );
        assert!("size".parse::<CatalogSort>().is_err());
    }

    #[test]
    fn search_refuses_control_characters() {
        for term in ["a\u{0}b", "\u{0}", "tab\there", "del\u{7f}"] {
            let err = CatalogQuery::new(
                Some(term),
                CatalogSort::default(),
                SortOrder::default(),
                PageRequest::new(20, 0),
            )
            .expect_err("a control character is refused");
            assert_eq!(err.field(), "search", "{term:?}");
        }
    }

    #[test]
    fn search_matches_slug_or_name_case_insensitively() {
        let report =
            ReportDefinition::reference(ReportKind::StatusCounts, datetime!(2026-01-01 0:00 UTC));
        let page = PageRequest::new(20, 0);
        let by = |term: &str| {
            CatalogQuery::new(Some(term), CatalogSort::Slug, SortOrder::Asc, page).unwrap()
        };
        assert!(by("STATUS").matches(&report));
        assert!(by("counts").matches(&report));
        assert!(!by("entities").matches(&report));
        assert!(
            CatalogQuery::new(Some("  "), CatalogSort::Slug, SortOrder::Asc, page)
                .unwrap()
                .search()
                .is_none()
        );
    }

    #[test]
    fn reference_reports_match_the_specification() {
        let at = datetime!(2026-01-01 0:00 UTC);
        let ttl: Vec<u32> = ReportKind::ALL
            .iter()
            .map(|k| ReportDefinition::reference(*k, at).cache_ttl_seconds)
            .collect();
        assert_eq!(ttl, vec![120, 90, 45]);
        let top = ReportDefinition::reference(ReportKind::TopEntities, at);
        assert_eq!(top.windows[0].retention_days, 180);
        assert_eq!(top.windows[1].refresh_interval_minutes, 360);
        assert!(top.allows(Window::Week));
    }
}
