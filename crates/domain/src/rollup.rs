//! Rollups: reports defined as data. A definition names measures computed over the events of
//! one tenant that pass its filters, grouped by up to three dimensions and by the buckets of
//! each of its windows (hour, day, week, month).
//!
//! Everything here is parsed from JSON with an error for every offending field, on its full
//! path (`measures[1].field`, `windows[0].retention_days`), so a client learns every mistake of
//! a definition at once.

use std::fmt;

use serde_json::{Map, Value, json};
use time::{Date, OffsetDateTime};

use crate::{
    DateRange, Description, DisplayName, EventStatus, NewEvent, PageRequest, ReportKind,
    ReportSlug, SourceSlug, TenantId, ValidationError, Window, WindowDefinition, sketch::Sketch,
};

/// The most measures a rollup computes.
pub const MAX_MEASURES: usize = 4;
/// The most dimensions a rollup groups by.
pub const MAX_DIMENSIONS: usize = 3;
/// The longest measure or dimension name.
pub const MAX_NAME_LEN: usize = 64;
/// The longest key of `properties` a rollup may read.
pub const MAX_PROPERTY_KEY_LEN: usize = 64;
/// The longest value a filter compares with.
pub const MAX_FILTER_VALUE_LEN: usize = 128;
/// The longest a cached result may be served.
pub const MAX_CACHE_TTL_SECONDS: u32 = 86_400;
/// The cache lifetime of a definition that does not choose one.
pub const DEFAULT_CACHE_TTL_SECONDS: u32 = 60;
/// The longest a window keeps its buckets, and so the oldest event any rollup counts.
pub const MAX_RETENTION_DAYS: u32 = 1_825;
/// The longest interval between two scheduled refreshes of a window (31 days).
pub const MAX_REFRESH_INTERVAL_MINUTES: u32 = 44_640;

/// The parameters of a read of a rollup besides its dimension filters (and `tenant`, which
/// selects whose rollup is read).
pub const READ_PARAMETERS: [&str; 7] = [
    "window",
    "date_from",
    "date_to",
    "group_by",
    "order",
    "limit",
    "offset",
];

/// Names a measure or a dimension may not take: a row's period, and the parameters of a read
/// (a dimension's name is also its filter parameter).
const RESERVED_NAMES: [&str; 11] = [
    "bucket_date",
    "period",
    "tenant",
    "breakdown",
    READ_PARAMETERS[0],
    READ_PARAMETERS[1],
    READ_PARAMETERS[2],
    READ_PARAMETERS[3],
    READ_PARAMETERS[4],
    READ_PARAMETERS[5],
    READ_PARAMETERS[6],
];

/// The fields a dimension or a filter may name, for messages.
const FIELD_NAMES: &str = "source, status, event_name, entity_id, user_id, properties.<key>";

/// A key of an event's `properties`: 1 to 64 characters of `A-Z`, `a-z`, `0-9`, `_`, `.` and `-`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PropertyKey(String);

impl PropertyKey {
    /// Parses a property key for `field`.
    ///
    /// # Errors
    /// A [`ValidationError`] on `field` when `raw` is not a property key.
    pub fn parse(field: &str, raw: &str) -> Result<Self, ValidationError> {
        let valid = !raw.is_empty()
            && raw.len() <= MAX_PROPERTY_KEY_LEN
            && raw
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
        if valid {
            Ok(Self(raw.to_owned()))
        } else {
            Err(ValidationError::new(
                field,
                format!(
                    "must name a property key of 1 to {MAX_PROPERTY_KEY_LEN} characters of \
                     A-Z, a-z, 0-9, _, . and -; got {raw:?}"
                ),
            ))
        }
    }

    /// The key.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An event field a rollup groups or filters by. Its value is text, or null when the event has
/// none (a missing `status`, a property that is absent or not a string).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Field {
    Source,
    Status,
    EventName,
    EntityId,
    UserId,
    Property(PropertyKey),
}

impl Field {
    /// Parses a field name (`event_name`, `properties.channel`) for `field`.
    ///
    /// # Errors
    /// A [`ValidationError`] on `field` naming the fields allowed.
    pub fn parse(field: &str, raw: &str) -> Result<Self, ValidationError> {
        Ok(match raw {
            "source" => Field::Source,
            "status" => Field::Status,
            "event_name" => Field::EventName,
            "entity_id" => Field::EntityId,
            "user_id" => Field::UserId,
            _ => match raw.strip_prefix("properties.") {
                Some(key) => Field::Property(PropertyKey::parse(field, key)?),
                None => {
                    return Err(ValidationError::new(
                        field,
                        format!("must be one of: {FIELD_NAMES}; got {raw:?}"),
                    ));
                }
            },
        })
    }

    /// The name the field is written as in a definition.
    pub fn name(&self) -> String {
        match self {
            Field::Source => "source".to_owned(),
            Field::Status => "status".to_owned(),
            Field::EventName => "event_name".to_owned(),
            Field::EntityId => "entity_id".to_owned(),
            Field::UserId => "user_id".to_owned(),
            Field::Property(key) => format!("properties.{}", key.as_str()),
        }
    }

    /// The name a dimension on this field takes when its definition gives none: the field's
    /// own name, or the property key when that is a valid name.
    fn default_dimension_name(&self) -> Option<String> {
        match self {
            Field::Property(key) => Some(key.as_str().to_owned()).filter(|k| is_valid_name(k)),
            other => Some(other.name()),
        }
    }

    /// Checks a filter value for this field: a source slug, a status (lowercased), or 1 to 128
    /// printable characters.
    fn parse_value(&self, field: &str, raw: &str) -> Result<String, ValidationError> {
        match self {
            Field::Source => SourceSlug::parse(field, raw).map(|s| s.as_str().to_owned()),
            Field::Status => EventStatus::parse(field, raw).map(|s| s.as_str().to_owned()),
            _ => filter_text(field, raw),
        }
    }
}

/// A filter's value as text: 1 to [`MAX_FILTER_VALUE_LEN`] printable characters.
///
/// # Errors
/// A [`ValidationError`] on `field` otherwise.
pub fn filter_text(field: &str, raw: &str) -> Result<String, ValidationError> {
    if raw.is_empty()
        || raw.chars().count() > MAX_FILTER_VALUE_LEN
        || raw.chars().any(char::is_control)
    {
        Err(ValidationError::new(
            field,
            format!("must be 1 to {MAX_FILTER_VALUE_LEN} printable characters"),
        ))
    } else {
        Ok(raw.to_owned())
    }
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

/// A numeric event field a `sum` adds up. A property whose value is not a JSON integer is
/// skipped (and counted in the run's summary).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum NumericField {
    AmountCents,
    ProcessingMs,
    Property(PropertyKey),
}

impl NumericField {
    /// Parses `amount_cents`, `processing_ms` or `properties.<key>` for `field`.
    ///
    /// # Errors
    /// A [`ValidationError`] on `field` naming the fields allowed.
    pub fn parse(field: &str, raw: &str) -> Result<Self, ValidationError> {
        Ok(match raw {
            "amount_cents" => NumericField::AmountCents,
            "processing_ms" => NumericField::ProcessingMs,
            _ => match raw.strip_prefix("properties.") {
                Some(key) => NumericField::Property(PropertyKey::parse(field, key)?),
                None => {
                    return Err(ValidationError::new(
                        field,
                        format!(
                            "must be one of: amount_cents, processing_ms, properties.<key>; \
                             got {raw:?}"
                        ),
                    ));
                }
            },
        })
    }

    /// The name the field is written as in a definition.
    pub fn name(&self) -> String {
        match self {
            NumericField::AmountCents => "amount_cents".to_owned(),
            NumericField::ProcessingMs => "processing_ms".to_owned(),
            NumericField::Property(key) => format!("properties.{}", key.as_str()),
        }
    }
}

/// What a measure computes per bucket and dimension values.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum MeasureKind {
    /// The number of events.
    Count,
    /// The sum of a numeric field.
    Sum(NumericField),
    /// The number of distinct values of a field (events without a value are not counted),
    /// kept as a mergeable sketch ([`Sketch`]): exact up to
    /// [`EXPLICIT_MAX`](crate::sketch::EXPLICIT_MAX) values, estimated past that.
    Distinct(Field),
}

impl MeasureKind {
    /// How snapshot rows' values of this measure combine.
    pub fn combine(&self) -> Combine {
        match self {
            MeasureKind::Count | MeasureKind::Sum(_) => Combine::Sum,
            MeasureKind::Distinct(_) => Combine::Distinct,
        }
    }
}

/// How the values of a measure in several snapshot rows make the value of a read's row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Combine {
    /// Added up: counts and sums.
    Sum,
    /// Sketches merged, then estimated: distinct counts (daily uniques do not add up).
    Distinct,
}

impl Combine {
    /// The value of no snapshot row.
    pub fn empty(self) -> MeasureValue {
        match self {
            Combine::Sum => MeasureValue::Total(0),
            Combine::Distinct => MeasureValue::Distinct(Sketch::new()),
        }
    }
}

/// A measure's value in a snapshot row, or in a read's row while it is being combined.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MeasureValue {
    /// A count or a sum.
    Total(i64),
    /// The sketch of a distinct count.
    Distinct(Sketch),
}

/// A total went beyond the range of a 64-bit integer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a rollup sum is beyond the range of a 64-bit integer")]
pub struct Overflow;

impl MeasureValue {
    /// Combines `other` into this value: adds totals, merges sketches.
    ///
    /// # Errors
    /// [`Overflow`] when a total leaves the 64-bit range (the value is then unchanged).
    pub fn combine(&mut self, other: &MeasureValue) -> Result<(), Overflow> {
        match (self, other) {
            (MeasureValue::Total(total), MeasureValue::Total(more)) => {
                *total = total.checked_add(*more).ok_or(Overflow)?;
            }
            (MeasureValue::Distinct(sketch), MeasureValue::Distinct(more)) => sketch.merge(more),
            // Values of one measure are always of one kind; a mix combines nothing.
            _ => {}
        }
        Ok(())
    }

    /// The number a read shows: the total, or the estimate of the sketch.
    pub fn number(&self) -> i64 {
        match self {
            MeasureValue::Total(total) => *total,
            MeasureValue::Distinct(sketch) => i64::try_from(sketch.estimate()).unwrap_or(i64::MAX),
        }
    }
}

/// A named measure of a rollup.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Measure {
    pub name: String,
    pub kind: MeasureKind,
}

/// A named dimension of a rollup.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Dimension {
    pub name: String,
    pub field: Field,
    /// Events without a value for the field (absent, or not a string for a property) are not
    /// counted by the rollup at all, rather than counted under the value null.
    pub required: bool,
}

/// Equality on one field, applied when the rollup is built: only events whose field has this
/// value are counted.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FieldFilter {
    pub field: Field,
    pub value: String,
}

/// What a rollup computes: its measures, its dimensions and the events it counts. Two
/// definitions with equal rollups have equal snapshots; a change to it retires them.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Rollup {
    /// One to [`MAX_MEASURES`], in definition order.
    pub measures: Vec<Measure>,
    /// Zero to [`MAX_DIMENSIONS`], in definition order.
    pub dimensions: Vec<Dimension>,
    /// Sorted by field, at most one per field.
    pub filters: Vec<FieldFilter>,
}

impl Rollup {
    /// The dimension called `name`.
    pub fn dimension(&self, name: &str) -> Option<&Dimension> {
        self.dimensions.iter().find(|d| d.name == name)
    }

    /// The measure called `name`.
    pub fn measure(&self, name: &str) -> Option<&Measure> {
        self.measures.iter().find(|m| m.name == name)
    }

    /// Whether the rollup counts `event`: its filters pass and every required dimension has a
    /// value for it.
    pub fn counts(&self, event: &NewEvent) -> bool {
        self.filters.iter().all(|filter| filter.matches(event))
            && self
                .dimensions
                .iter()
                .all(|d| !d.required || d.field.value_of(event).is_some())
    }

    /// The values of `event` for the dimensions, in definition order; `None` when the rollup
    /// does not count the event because a required dimension has no value for it.
    pub fn dimension_values(&self, event: &NewEvent) -> Option<Vec<Option<String>>> {
        self.dimensions
            .iter()
            .map(|d| match d.field.value_of(event) {
                None if d.required => None,
                value => Some(value.map(str::to_owned)),
            })
            .collect()
    }
}

/// A report defined as data: what it computes, in which windows, and how it is served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RollupDefinition {
    pub slug: ReportSlug,
    pub name: DisplayName,
    pub description: Description,
    pub rollup: Rollup,
    /// One to four distinct windows, in definition order; exactly one is the default.
    pub windows: Vec<WindowDefinition>,
    /// How long a cached result may be served; 0 disables caching.
    pub cache_ttl_seconds: u32,
    /// Readable without a key (only reports of the public default tenant are ever served so).
    pub is_public: bool,
}

impl RollupDefinition {
    /// The fields of a definition.
    const FIELDS: [&'static str; 9] = [
        "slug",
        "name",
        "description",
        "measures",
        "dimensions",
        "filters",
        "windows",
        "cache_ttl_seconds",
        "is_public",
    ];

    /// Parses a definition sent as JSON, collecting an error for every field that breaks a
    /// rule.
    ///
    /// # Errors
    /// Every [`ValidationError`] found, each on its full field path.
    pub fn parse(value: &Value) -> Result<Self, Vec<ValidationError>> {
        let mut errors = Vec::new();
        let Some(object) = value.as_object() else {
            return Err(vec![ValidationError::new("body", "must be a JSON object")]);
        };
        refuse_unknown(object, "", &Self::FIELDS, &mut errors);

        let slug = match object.get("slug") {
            None | Some(Value::Null) => {
                errors.push(ValidationError::new("slug", "is required"));
                None
            }
            Some(Value::String(raw)) => ReportSlug::parse_for("slug", raw)
                .map_err(|e| errors.push(e))
                .ok(),
            Some(_) => {
                errors.push(ValidationError::new("slug", "must be a string"));
                None
            }
        };
        let name = match text(object, "name", &mut errors) {
            Some(Some(raw)) => DisplayName::parse("name", raw)
                .map_err(|e| errors.push(e))
                .ok(),
            Some(None) => slug
                .as_ref()
                .and_then(|slug| DisplayName::parse("name", slug.as_str()).ok()),
            None => None,
        };
        let description = match text(object, "description", &mut errors) {
            Some(raw) => Description::parse("description", raw.unwrap_or(""))
                .map_err(|e| errors.push(e))
                .ok(),
            None => None,
        };
        let measures = parse_measures(object.get("measures"), &mut errors);
        let dimensions = parse_dimensions(object.get("dimensions"), &mut errors);
        if let (Some(measures), Some(dimensions)) = (&measures, &dimensions) {
            check_names_unique(measures, dimensions, &mut errors);
        }
        let filters = parse_filters(object.get("filters"), &mut errors);
        let windows = parse_windows(object.get("windows"), &mut errors);
        let cache_ttl_seconds = integer(
            object,
            "",
            "cache_ttl_seconds",
            0..=MAX_CACHE_TTL_SECONDS,
            DEFAULT_CACHE_TTL_SECONDS,
            &mut errors,
        );
        let is_public = match object.get("is_public") {
            None | Some(Value::Null) => Some(false),
            Some(Value::Bool(public)) => Some(*public),
            Some(_) => {
                errors.push(ValidationError::new("is_public", "must be true or false"));
                None
            }
        };

        match (
            errors.is_empty(),
            slug,
            name,
            description,
            measures,
            dimensions,
            filters,
            windows,
            cache_ttl_seconds,
            is_public,
        ) {
            (
                true,
                Some(slug),
                Some(name),
                Some(description),
                Some(measures),
                Some(dimensions),
                Some(filters),
                Some(windows),
                Some(cache_ttl_seconds),
                Some(is_public),
            ) => Ok(Self {
                slug,
                name,
                description,
                rollup: Rollup {
                    measures,
                    dimensions,
                    filters,
                },
                windows,
                cache_ttl_seconds,
                is_public,
            }),
            _ => Err(errors),
        }
    }

    /// Checks that the rollup is built in `window`.
    ///
    /// # Errors
    /// A [`ValidationError`] on `window` naming the rollup's windows.
    pub fn check_window(&self, window: Window) -> Result<Window, ValidationError> {
        crate::catalog::check_window(&self.slug, &self.windows, window)
    }

    /// Checks that a read of `window` over `range` on `today` asks for some kept bucket.
    ///
    /// # Errors
    /// As [`crate::catalog::check_retention`].
    pub fn check_retention(
        &self,
        window: Window,
        range: DateRange,
        today: Date,
    ) -> Result<(), ValidationError> {
        crate::catalog::check_retention(&self.windows, window, range, today)
    }

    /// The windows whose buckets are kept over the whole of `range` as of `today`: each keeps
    /// its last `retention_days` (at most `max_range_days`, the longest a backfill builds)
    /// ending today. A read may merge their buckets (see [`RollupQuery::tiles`]); one of a
    /// window kept for less would merge buckets never built.
    pub fn windows_kept_over(
        &self,
        range: DateRange,
        today: Date,
        max_range_days: u32,
    ) -> Vec<Window> {
        self.windows
            .iter()
            .filter(|w| {
                let kept = w.retention_days.min(max_range_days).max(1);
                let first = today.saturating_sub(time::Duration::days(i64::from(kept) - 1));
                range.from() >= first
            })
            .map(|w| w.window)
            .collect()
    }

    /// The window read when a request names none.
    pub fn default_window(&self) -> Window {
        self.windows
            .iter()
            .find(|w| w.is_default)
            .map_or(Window::Day, |w| w.window)
    }

    /// The definition as JSON, every default written out: what [`RollupDefinition::parse`]
    /// reads back to an equal definition.
    pub fn to_json(&self) -> Value {
        let measures: Vec<Value> = self
            .rollup
            .measures
            .iter()
            .map(|m| match &m.kind {
                MeasureKind::Count => json!({"name": m.name, "kind": "count"}),
                MeasureKind::Sum(field) => {
                    json!({"name": m.name, "kind": "sum", "field": field.name()})
                }
                MeasureKind::Distinct(field) => {
                    json!({"name": m.name, "kind": "distinct", "field": field.name()})
                }
            })
            .collect();
        let dimensions: Vec<Value> = self
            .rollup
            .dimensions
            .iter()
            .map(|d| json!({"name": d.name, "field": d.field.name(), "required": d.required}))
            .collect();
        let filters: Map<String, Value> = self
            .rollup
            .filters
            .iter()
            .map(|f| (f.field.name(), Value::String(f.value.clone())))
            .collect();
        let windows: Vec<Value> = self
            .windows
            .iter()
            .map(|w| {
                json!({
                    "window": w.window.as_str(),
                    "retention_days": w.retention_days,
                    "refresh_interval_minutes": w.refresh_interval_minutes,
                    "is_default": w.is_default,
                })
            })
            .collect();
        json!({
            "slug": self.slug.as_str(),
            "name": self.name.as_str(),
            "description": self.description.as_str(),
            "measures": measures,
            "dimensions": dimensions,
            "filters": filters,
            "windows": windows,
            "cache_ttl_seconds": self.cache_ttl_seconds,
            "is_public": self.is_public,
        })
    }
}

/// The definition of the built-in report of `kind`, as its declarative file under
/// `seeds/reports/` holds it (compiled in, so the binary needs no files beside it), parsed
/// once per process.
///
/// # Panics
/// When a seed file is not a valid definition: the files are part of the build and this
/// crate's tests parse every one of them, so that is a defect of the build, never of input.
pub fn builtin(kind: ReportKind) -> &'static RollupDefinition {
    static PARSED: [std::sync::OnceLock<RollupDefinition>; 3] =
        [const { std::sync::OnceLock::new() }; 3];
    // One cell per kind, by declaration order (the order of `ReportKind::ALL`).
    PARSED[kind as usize].get_or_init(|| {
        parse_builtin(kind).unwrap_or_else(|errors| {
            panic!(
                "seeds/reports/{}.json is not a valid definition: {errors:?}",
                kind.slug()
            )
        })
    })
}

/// Parses the seed file of `kind`.
fn parse_builtin(kind: ReportKind) -> Result<RollupDefinition, Vec<ValidationError>> {
    let text = match kind {
        ReportKind::VolumeByPeriod => include_str!("../../../seeds/reports/volume-by-period.json"),
        ReportKind::StatusCounts => include_str!("../../../seeds/reports/status-counts.json"),
        ReportKind::TopEntities => include_str!("../../../seeds/reports/top-entities.json"),
    };
    parse_seed(&format!("seeds/reports/{}.json", kind.slug()), text)
}

/// A definition from the text of its seed file at `path`.
fn parse_seed(path: &str, text: &str) -> Result<RollupDefinition, Vec<ValidationError>> {
    let value: Value =
        serde_json::from_str(text).map_err(|e| vec![ValidationError::new(path, e.to_string())])?;
    RollupDefinition::parse(&value)
}

/// The rollups every tenant has beside its own, as their declarative files under
/// `seeds/rollups/` hold them (compiled in): web analytics' first questions (events and unique
/// users per period, by page path, by event name and channel). Unlike the built-in reports
/// they are read in the shape of any tenant's report; like them, no tenant can change or
/// delete them, or define a report of the same slug.
const STANDARD_FILES: [(&str, &str); 3] = [
    (
        "traffic",
        include_str!("../../../seeds/rollups/traffic.json"),
    ),
    (
        "top-paths",
        include_str!("../../../seeds/rollups/top-paths.json"),
    ),
    (
        "events-by-name",
        include_str!("../../../seeds/rollups/events-by-name.json"),
    ),
];

/// The rollups every tenant has (see [`STANDARD_FILES`]), by slug, parsed once per process.
///
/// # Panics
/// When a seed file is not a valid definition of its slug: the files are part of the build
/// and this crate's tests parse every one, so that is a defect of the build, never of input.
pub fn standard_rollups() -> &'static [RollupDefinition] {
    static PARSED: std::sync::OnceLock<Vec<RollupDefinition>> = std::sync::OnceLock::new();
    PARSED.get_or_init(|| {
        STANDARD_FILES
            .iter()
            .map(
                |(slug, text)| match parse_seed(&format!("seeds/rollups/{slug}.json"), text) {
                    Ok(definition) if definition.slug.as_str() == *slug => definition,
                    other => panic!(
                        "seeds/rollups/{slug}.json is not a valid definition of {slug}: {other:?}"
                    ),
                },
            )
            .collect()
    })
}

/// The rollup every tenant has under `slug`, if any.
pub fn standard_rollup(slug: &ReportSlug) -> Option<&'static RollupDefinition> {
    standard_rollups().iter().find(|d| d.slug == *slug)
}

/// The largest magnitude a summed property value may have: integers of up to 18 digits, which
/// every adapter reads exactly.
pub const MAX_SUMMED_PROPERTY: i64 = 999_999_999_999_999_999;

/// What a `sum` takes from one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Addend {
    /// This value.
    Value(i64),
    /// Nothing: the property is absent or null.
    Absent,
    /// Nothing, and the event is counted as skipped: the property is not a JSON integer of at
    /// most 18 digits (a string, a fraction, an object).
    Skipped,
}

impl Field {
    /// The value of this field in `event`: `None` (null) when the event has none, or when a
    /// property is absent or not a JSON string.
    pub fn value_of<'e>(&self, event: &'e NewEvent) -> Option<&'e str> {
        match self {
            Field::Source => Some(event.source.as_str()),
            Field::Status => event.status.map(EventStatus::as_str),
            Field::EventName => Some(event.event_name.as_str()),
            Field::EntityId => event.entity_id.as_deref(),
            Field::UserId => event.user_id.as_deref(),
            Field::Property(key) => event.properties.get(key.as_str()).and_then(Value::as_str),
        }
    }
}

impl NumericField {
    /// What a sum of this field takes from `event`.
    pub fn addend(&self, event: &NewEvent) -> Addend {
        match self {
            NumericField::AmountCents => Addend::Value(event.amount_cents),
            NumericField::ProcessingMs => Addend::Value(event.processing_ms),
            NumericField::Property(key) => match event.properties.get(key.as_str()) {
                None | Some(Value::Null) => Addend::Absent,
                Some(value) => value
                    .as_i64()
                    .filter(|n| n.unsigned_abs() <= MAX_SUMMED_PROPERTY.unsigned_abs())
                    .map_or(Addend::Skipped, Addend::Value),
            },
        }
    }
}

impl Measure {
    /// Adds what `event` contributes to this measure to `value` (of this measure's kind):
    /// one for a count, the field for a sum, the field's hash for a distinct count. Returns
    /// whether a sum skipped a value it cannot add (see [`Addend::Skipped`]).
    ///
    /// # Errors
    /// [`Overflow`] when a total leaves the 64-bit range.
    pub fn add(&self, value: &mut MeasureValue, event: &NewEvent) -> Result<bool, Overflow> {
        match (&self.kind, value) {
            (MeasureKind::Count, MeasureValue::Total(total)) => {
                *total = total.checked_add(1).ok_or(Overflow)?;
            }
            (MeasureKind::Sum(field), MeasureValue::Total(total)) => match field.addend(event) {
                Addend::Value(addend) => *total = total.checked_add(addend).ok_or(Overflow)?,
                Addend::Absent => {}
                Addend::Skipped => return Ok(true),
            },
            (MeasureKind::Distinct(field), MeasureValue::Distinct(sketch)) => {
                if let Some(text) = field.value_of(event) {
                    sketch.add(crate::sketch::hash(text.as_bytes()));
                }
            }
            // A value of another kind than the measure's: nothing to add to.
            _ => {}
        }
        Ok(false)
    }
}

impl FieldFilter {
    /// Whether `event` passes this filter.
    pub fn matches(&self, event: &NewEvent) -> bool {
        self.field.value_of(event) == Some(self.value.as_str())
    }
}

/// A read of a rollup's snapshot rows: the buckets of `window` starting inside `range`,
/// grouped by the period and the dimensions asked for (combining the others away: totals
/// summed, sketches merged), filtered on dimension values, ordered and paged.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RollupQuery {
    pub tenant: TenantId,
    pub report: ReportSlug,
    pub window: Window,
    pub range: DateRange,
    /// How each measure of the rollup combines, in definition order: every row carries them
    /// all.
    pub measures: Vec<Combine>,
    /// Whether rows are per bucket.
    pub by_period: bool,
    /// The positions of the dimensions rows are grouped by, ascending.
    pub dimensions: Vec<usize>,
    /// Only snapshot rows whose dimension at the position has this value.
    pub filters: Vec<(usize, String)>,
    pub order: RollupOrder,
    pub page: PageRequest,
    /// The rollup's windows: a read of days (or hours) not by period may merge the buckets of
    /// those coarser than `window` instead of the finer ones they hold (see
    /// [`RollupQuery::tiles`]); empty to read `window` alone.
    pub coarser: Vec<Window>,
}

impl RollupQuery {
    /// The windows and ranges of days the read merges: `window` over `range` when it is by
    /// period, of weeks or months, or has no coarser window; else the coarsest buckets that tile the range (months
    /// inside, then weeks, then days or hours at the edges). Every bucket of `window` in the
    /// range lies in exactly one tile, so the merge is the same; it merges fewer rows.
    pub fn tiles(&self) -> Vec<(Window, DateRange)> {
        // Only days (and hours) tile: a week's buckets straddle months.
        if self.by_period || !matches!(self.window, Window::Hour | Window::Day) {
            return vec![(self.window, self.range)];
        }
        let mut windows: Vec<Window> = self
            .coarser
            .iter()
            .copied()
            .filter(|w| *w > self.window)
            .collect();
        windows.sort_unstable();
        windows.dedup();
        windows.insert(0, self.window);
        // In date order: each range's left side, its middle, then its right side.
        let mut tiles = Vec::new();
        tile(self.range, &windows, &mut tiles);
        tiles
    }

    /// Whether [`RollupQuery::tiles`] reads more than one window.
    pub fn is_tiled(&self) -> bool {
        self.tiles()
            .iter()
            .any(|(window, _)| *window != self.window)
    }
}

/// Tiles `range` with the whole buckets of the coarsest of `windows` (finest first) that fit,
/// and the rest at either side with the finer ones; the finest takes what is left. A range of
/// whole days is whole buckets of `hour` and `day` alike.
fn tile(range: DateRange, windows: &[Window], tiles: &mut Vec<(Window, DateRange)>) {
    let Some((&coarsest, finer)) = windows.split_last() else {
        return;
    };
    if finer.is_empty() || matches!(coarsest, Window::Hour | Window::Day) {
        tiles.push((coarsest, range));
        return;
    }
    let first = if coarsest.bucket_start(range.from()) == range.from() {
        range.from()
    } else {
        coarsest
            .bucket_end(range.from())
            .next_day()
            .unwrap_or(Date::MAX)
    };
    let last = if coarsest.bucket_end(range.to()) == range.to() {
        range.to()
    } else {
        coarsest
            .bucket_start(range.to())
            .previous_day()
            .unwrap_or(Date::MIN)
    };
    let Ok(whole) = DateRange::new(first, last) else {
        tile(range, finer, tiles);
        return;
    };
    if let Some(before) = first.previous_day()
        && let Ok(left) = DateRange::new(range.from(), before)
    {
        tile(left, finer, tiles);
    }
    tiles.push((coarsest, whole));
    if let Some(after) = last.next_day()
        && let Ok(right) = DateRange::new(after, range.to())
    {
        tile(right, finer, tiles);
    }
}

/// How the rows of a rollup read are ordered. Ties, and everything after the first key, are
/// broken by the bucket (ascending) and then the grouped dimension values in position order,
/// compared bytewise, with null after every value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RollupOrder {
    /// By bucket first.
    Period,
    /// By the measure at this position, largest first (a top-N).
    MeasureDescending(usize),
}

/// One row of a rollup read.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct RollupRow {
    /// The bucket's first day, when the read is by period.
    pub bucket_date: Option<Date>,
    /// The bucket's hour of day (UTC), when the read is by period of the `hour` window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bucket_hour: Option<u8>,
    /// The values of the grouped dimensions, in the query's order; `None` is null.
    pub dimensions: Vec<Option<String>>,
    /// Every measure, combined over the grouped snapshot rows (a distinct one as its merged
    /// sketch's estimate), in definition order.
    pub measures: Vec<i64>,
}

/// A row of a rollup read with its measures as they merge further: totals, and each distinct
/// measure's merged sketch rather than its estimate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MergedRow {
    /// The row as a read gives it, every measure a number.
    pub row: RollupRow,
    /// Every measure, in definition order.
    pub values: Vec<MeasureValue>,
}

/// Every row of a rollup read, unpaged, each with its mergeable measures (see [`MergedRow`]),
/// and the freshness of a page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MergedPage {
    pub rows: Vec<MergedRow>,
    pub last_refreshed_at: Option<OffsetDateTime>,
    /// As [`RollupPage::uncounted_since`].
    pub uncounted_since: Option<OffsetDateTime>,
}

/// The events of a time span shorter than a bucket, aggregated as a rollup would: the events of
/// `tenant` that occurred in `[from, to)`, pass the rollup's filters and have a value for each
/// required dimension, and whose dimension at each position of `filters` has that value. Reads
/// raw events, so a caller bounds the span (the ragged edges of a time window, an hour at
/// most each).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpanQuery {
    pub tenant: TenantId,
    pub rollup: Rollup,
    pub from: OffsetDateTime,
    pub to: OffsetDateTime,
    pub filters: Vec<(usize, String)>,
}

impl SpanQuery {
    /// Checks that every filter names a dimension of the rollup.
    ///
    /// # Errors
    /// The first position past the rollup's dimensions.
    pub fn check(&self) -> Result<(), String> {
        match self
            .filters
            .iter()
            .find(|(position, _)| *position >= self.rollup.dimensions.len())
        {
            Some((position, _)) => Err(format!(
                "a span filters on dimension {position} of a rollup of {}",
                self.rollup.dimensions.len()
            )),
            None => Ok(()),
        }
    }

    /// Whether `event` is one of the span's.
    pub fn counts(&self, event: &NewEvent) -> bool {
        if event.occurred_at < self.from
            || event.occurred_at >= self.to
            || !self
                .rollup
                .filters
                .iter()
                .all(|filter| filter.matches(event))
        {
            return false;
        }
        let Some(values) = self.rollup.dimension_values(event) else {
            return false;
        };
        self.filters.iter().all(|(position, wanted)| {
            values.get(*position).and_then(Option::as_deref) == Some(wanted.as_str())
        })
    }
}

/// A page of a rollup read, with the number of rows of the whole read and the newest
/// `computed_at` among the snapshot rows it read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RollupPage {
    pub rows: Vec<RollupRow>,
    pub total_rows: u64,
    pub last_refreshed_at: Option<OffsetDateTime>,
    /// When the oldest change the buckets of the query's window and range do not count yet
    /// was committed (the oldest [`crate::DirtyBucket::first_marked_at`] among them); `None`
    /// when they count every event.
    pub uncounted_since: Option<OffsetDateTime>,
}

impl RollupPage {
    /// Whether some event the page should count is not counted yet.
    pub fn is_stale(&self) -> bool {
        self.uncounted_since.is_some()
    }
}

/// Orders two rows of a read as [`RollupOrder`] defines: the reference every adapter follows.
pub fn compare_rows(order: RollupOrder, a: &RollupRow, b: &RollupRow) -> std::cmp::Ordering {
    let first = match order {
        RollupOrder::Period => std::cmp::Ordering::Equal,
        RollupOrder::MeasureDescending(i) => b.measures.get(i).cmp(&a.measures.get(i)),
    };
    first
        .then_with(|| a.bucket_date.cmp(&b.bucket_date))
        .then_with(|| a.bucket_hour.cmp(&b.bucket_hour))
        .then_with(|| {
            a.dimensions
                .iter()
                .zip(&b.dimensions)
                .map(|(x, y)| match (x, y) {
                    (Some(x), Some(y)) => x.as_bytes().cmp(y.as_bytes()),
                    (Some(_), None) => std::cmp::Ordering::Less,
                    (None, Some(_)) => std::cmp::Ordering::Greater,
                    (None, None) => std::cmp::Ordering::Equal,
                })
                .find(|o| o.is_ne())
                .unwrap_or(std::cmp::Ordering::Equal)
        })
}

/// Whether `name` may name a measure or a dimension: 1 to 64 characters of `a-z`, `0-9` and
/// `_`, starting with a letter.
fn is_valid_name(name: &str) -> bool {
    name.len() <= MAX_NAME_LEN
        && name.as_bytes().first().is_some_and(u8::is_ascii_lowercase)
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

fn check_name(at: &str, name: &str) -> Result<String, ValidationError> {
    if !is_valid_name(name) {
        return Err(ValidationError::new(
            at,
            format!(
                "must be 1 to {MAX_NAME_LEN} characters of a-z, 0-9 and _, starting with a \
                 letter; got {name:?}"
            ),
        ));
    }
    if RESERVED_NAMES.contains(&name) {
        return Err(ValidationError::new(
            at,
            format!(
                "{name:?} is reserved (reserved: {})",
                RESERVED_NAMES.join(", ")
            ),
        ));
    }
    Ok(name.to_owned())
}

fn path(parent: &str, name: &str) -> String {
    if parent.is_empty() {
        name.to_owned()
    } else {
        format!("{parent}.{name}")
    }
}

/// Adds an error for every key of `object` not in `allowed`.
fn refuse_unknown(
    object: &Map<String, Value>,
    parent: &str,
    allowed: &[&str],
    errors: &mut Vec<ValidationError>,
) {
    for key in object.keys() {
        if !allowed.contains(&key.as_str()) {
            errors.push(ValidationError::new(
                path(parent, key),
                format!("is not a field here (fields: {})", allowed.join(", ")),
            ));
        }
    }
}

/// An optional text field: `Some(None)` when absent or null, `None` after an error.
fn text<'v>(
    object: &'v Map<String, Value>,
    name: &str,
    errors: &mut Vec<ValidationError>,
) -> Option<Option<&'v str>> {
    match object.get(name) {
        None | Some(Value::Null) => Some(None),
        Some(Value::String(raw)) => Some(Some(raw.as_str())),
        Some(_) => {
            errors.push(ValidationError::new(name, "must be a string"));
            None
        }
    }
}

/// An optional integer field in `range`, `default` when absent or null; `None` after an error.
fn integer(
    object: &Map<String, Value>,
    parent: &str,
    name: &str,
    range: std::ops::RangeInclusive<u32>,
    default: u32,
    errors: &mut Vec<ValidationError>,
) -> Option<u32> {
    match object.get(name) {
        None | Some(Value::Null) => Some(default),
        Some(value) => {
            let n = value
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .filter(|n| range.contains(n));
            if n.is_none() {
                errors.push(ValidationError::new(
                    path(parent, name),
                    format!(
                        "must be an integer from {} to {}",
                        range.start(),
                        range.end()
                    ),
                ));
            }
            n
        }
    }
}

/// The items of an array field, or an error when it is not an array of `min..=max` items.
fn array<'v>(
    value: Option<&'v Value>,
    name: &str,
    min: usize,
    max: usize,
    errors: &mut Vec<ValidationError>,
) -> Option<&'v [Value]> {
    match value {
        None | Some(Value::Null) if min == 0 => Some(&[]),
        None | Some(Value::Null) => {
            errors.push(ValidationError::new(name, "is required"));
            None
        }
        Some(Value::Array(items)) if (min..=max).contains(&items.len()) => Some(items),
        Some(Value::Array(_)) => {
            errors.push(ValidationError::new(
                name,
                format!("must hold {min} to {max} items"),
            ));
            None
        }
        Some(_) => {
            errors.push(ValidationError::new(name, "must be an array"));
            None
        }
    }
}

/// The members of an array item that must be an object, with unknown members refused.
fn item<'v>(
    value: &'v Value,
    at: &str,
    allowed: &[&str],
    errors: &mut Vec<ValidationError>,
) -> Option<&'v Map<String, Value>> {
    match value.as_object() {
        Some(object) => {
            refuse_unknown(object, at, allowed, errors);
            Some(object)
        }
        None => {
            errors.push(ValidationError::new(at, "must be a JSON object"));
            None
        }
    }
}

/// A required string member of an array item; `None` after an error.
fn member<'v>(
    object: &'v Map<String, Value>,
    at: &str,
    name: &str,
    errors: &mut Vec<ValidationError>,
) -> Option<&'v str> {
    match object.get(name) {
        Some(Value::String(raw)) => Some(raw.as_str()),
        None | Some(Value::Null) => {
            errors.push(ValidationError::new(path(at, name), "is required"));
            None
        }
        Some(_) => {
            errors.push(ValidationError::new(path(at, name), "must be a string"));
            None
        }
    }
}

fn parse_measures(
    value: Option<&Value>,
    errors: &mut Vec<ValidationError>,
) -> Option<Vec<Measure>> {
    let items = array(value, "measures", 1, MAX_MEASURES, errors)?;
    let before = errors.len();
    let mut measures = Vec::new();
    for (i, value) in items.iter().enumerate() {
        let at = format!("measures[{i}]");
        let Some(object) = item(value, &at, &["name", "kind", "field"], errors) else {
            continue;
        };
        let name = member(object, &at, "name", errors).and_then(|raw| {
            check_name(&path(&at, "name"), raw)
                .map_err(|e| errors.push(e))
                .ok()
        });
        let field = object.get("field").filter(|v| !v.is_null());
        let kind = match member(object, &at, "kind", errors) {
            Some("count") => match field {
                None => Some(MeasureKind::Count),
                Some(_) => {
                    errors.push(ValidationError::new(
                        path(&at, "field"),
                        "is not taken by a count: a count counts events",
                    ));
                    None
                }
            },
            Some("sum") => match field {
                None => {
                    errors.push(ValidationError::new(
                        path(&at, "field"),
                        "is required for a sum (amount_cents, processing_ms or properties.<key>)",
                    ));
                    None
                }
                Some(Value::String(raw)) => NumericField::parse(&path(&at, "field"), raw)
                    .map(MeasureKind::Sum)
                    .map_err(|e| errors.push(e))
                    .ok(),
                Some(_) => {
                    errors.push(ValidationError::new(path(&at, "field"), "must be a string"));
                    None
                }
            },
            Some("distinct") => match field {
                None => {
                    errors.push(ValidationError::new(
                        path(&at, "field"),
                        format!("is required for a distinct count ({FIELD_NAMES})"),
                    ));
                    None
                }
                Some(Value::String(raw)) => Field::parse(&path(&at, "field"), raw)
                    .map(MeasureKind::Distinct)
                    .map_err(|e| errors.push(e))
                    .ok(),
                Some(_) => {
                    errors.push(ValidationError::new(path(&at, "field"), "must be a string"));
                    None
                }
            },
            Some(other) => {
                errors.push(ValidationError::new(
                    path(&at, "kind"),
                    format!("must be one of: count, sum, distinct; got {other:?}"),
                ));
                None
            }
            None => None,
        };
        if let (Some(name), Some(kind)) = (name, kind) {
            measures.push(Measure { name, kind });
        }
    }
    (errors.len() == before).then_some(measures)
}

fn parse_dimensions(
    value: Option<&Value>,
    errors: &mut Vec<ValidationError>,
) -> Option<Vec<Dimension>> {
    let items = array(value, "dimensions", 0, MAX_DIMENSIONS, errors)?;
    let before = errors.len();
    let mut dimensions: Vec<Dimension> = Vec::new();
    for (i, value) in items.iter().enumerate() {
        let at = format!("dimensions[{i}]");
        let Some(object) = item(value, &at, &["name", "field", "required"], errors) else {
            continue;
        };
        let required = match object.get("required") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(required)) => *required,
            Some(_) => {
                errors.push(ValidationError::new(
                    path(&at, "required"),
                    "must be true or false",
                ));
                continue;
            }
        };
        let Some(field) = member(object, &at, "field", errors).and_then(|raw| {
            Field::parse(&path(&at, "field"), raw)
                .map_err(|e| errors.push(e))
                .ok()
        }) else {
            continue;
        };
        if dimensions.iter().any(|d| d.field == field) {
            errors.push(ValidationError::new(
                path(&at, "field"),
                format!("{field} is already a dimension of this rollup"),
            ));
            continue;
        }
        let name = match object.get("name") {
            None | Some(Value::Null) => match field.default_dimension_name() {
                Some(name) => check_name(&path(&at, "name"), &name),
                None => Err(ValidationError::new(
                    path(&at, "name"),
                    format!("is required: the key of {field} is not a valid name"),
                )),
            },
            Some(Value::String(raw)) => check_name(&path(&at, "name"), raw),
            Some(_) => Err(ValidationError::new(path(&at, "name"), "must be a string")),
        };
        match name {
            Ok(name) => dimensions.push(Dimension {
                name,
                field,
                required,
            }),
            Err(e) => errors.push(e),
        }
    }
    (errors.len() == before).then_some(dimensions)
}

/// A measure and a dimension, or two of either, may not share a name: a row holds them side
/// by side.
fn check_names_unique(
    measures: &[Measure],
    dimensions: &[Dimension],
    errors: &mut Vec<ValidationError>,
) {
    let names = measures
        .iter()
        .enumerate()
        .map(|(i, m)| (format!("measures[{i}].name"), m.name.as_str()))
        .chain(
            dimensions
                .iter()
                .enumerate()
                .map(|(i, d)| (format!("dimensions[{i}].name"), d.name.as_str())),
        )
        .collect::<Vec<_>>();
    for (n, (at, name)) in names.iter().enumerate() {
        if let Some((first, _)) = names[..n].iter().find(|(_, other)| other == name) {
            errors.push(ValidationError::new(
                at.clone(),
                format!("{name:?} is already the name of {first}"),
            ));
        }
    }
}

fn parse_filters(
    value: Option<&Value>,
    errors: &mut Vec<ValidationError>,
) -> Option<Vec<FieldFilter>> {
    let object = match value {
        None | Some(Value::Null) => return Some(Vec::new()),
        Some(Value::Object(object)) => object,
        Some(_) => {
            errors.push(ValidationError::new(
                "filters",
                "must be a JSON object of field names and values",
            ));
            return None;
        }
    };
    let before = errors.len();
    let mut filters = Vec::new();
    for (raw, value) in object {
        let at = format!("filters.{raw}");
        let Ok(field) = Field::parse(&at, raw).map_err(|e| errors.push(e)) else {
            continue;
        };
        match value {
            Value::String(v) => match field.parse_value(&at, v) {
                Ok(value) => filters.push(FieldFilter { field, value }),
                Err(e) => errors.push(e),
            },
            _ => errors.push(ValidationError::new(at, "must be a string")),
        }
    }
    filters.sort();
    (errors.len() == before).then_some(filters)
}

/// The retention and refresh interval a window takes when its definition gives none.
const fn window_defaults(window: Window) -> (u32, u32) {
    match window {
        Window::Hour => (14, 15),
        Window::Day => (365, 60),
        Window::Week => (730, 240),
        Window::Month => (1_825, 1_440),
    }
}

fn parse_windows(
    value: Option<&Value>,
    errors: &mut Vec<ValidationError>,
) -> Option<Vec<WindowDefinition>> {
    let items = match value {
        None | Some(Value::Null) => {
            let (retention_days, refresh_interval_minutes) = window_defaults(Window::Day);
            return Some(vec![WindowDefinition {
                window: Window::Day,
                retention_days,
                refresh_interval_minutes,
                is_default: true,
            }]);
        }
        other => array(other, "windows", 1, Window::ALL.len(), errors)?,
    };
    let before = errors.len();
    let mut windows: Vec<WindowDefinition> = Vec::new();
    for (i, value) in items.iter().enumerate() {
        let at = format!("windows[{i}]");
        let Some(object) = item(
            value,
            &at,
            &[
                "window",
                "retention_days",
                "refresh_interval_minutes",
                "is_default",
            ],
            errors,
        ) else {
            continue;
        };
        let window = member(object, &at, "window", errors).and_then(|raw| {
            raw.parse::<Window>()
                .map_err(|e| errors.push(ValidationError::new(path(&at, "window"), e.message())))
                .ok()
        });
        if let Some(window) = window
            && windows.iter().any(|w| w.window == window)
        {
            errors.push(ValidationError::new(
                path(&at, "window"),
                format!("{window} is already a window of this rollup"),
            ));
        }
        let (retention, refresh) = window_defaults(window.unwrap_or(Window::Day));
        let retention_days = integer(
            object,
            &at,
            "retention_days",
            1..=MAX_RETENTION_DAYS,
            retention,
            errors,
        );
        let refresh_interval_minutes = integer(
            object,
            &at,
            "refresh_interval_minutes",
            1..=MAX_REFRESH_INTERVAL_MINUTES,
            refresh,
            errors,
        );
        let is_default = match object.get("is_default") {
            None | Some(Value::Null) => Some(false),
            Some(Value::Bool(b)) => Some(*b),
            Some(_) => {
                errors.push(ValidationError::new(
                    path(&at, "is_default"),
                    "must be true or false",
                ));
                None
            }
        };
        if is_default == Some(true) && windows.iter().any(|w| w.is_default) {
            errors.push(ValidationError::new(
                path(&at, "is_default"),
                "only one window may be the default",
            ));
        }
        if let (
            Some(window),
            Some(retention_days),
            Some(refresh_interval_minutes),
            Some(is_default),
        ) = (window, retention_days, refresh_interval_minutes, is_default)
        {
            windows.push(WindowDefinition {
                window,
                retention_days,
                refresh_interval_minutes,
                is_default,
            });
        }
    }
    if errors.len() != before {
        return None;
    }
    if !windows.iter().any(|w| w.is_default)
        && let Some(first) = windows.first_mut()
    {
        first.is_default = true;
    }
    Some(windows)
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;
    use crate::ReportDefinition;

    /// The rollup a built-in report of `kind` is: `event_count` by the kind's one dimension.
    fn of_kind(kind: ReportKind) -> Rollup {
        let field = match kind {
            ReportKind::VolumeByPeriod => Field::Source,
            ReportKind::StatusCounts => Field::Status,
            ReportKind::TopEntities => Field::EntityId,
        };
        Rollup {
            measures: vec![Measure {
                name: crate::report::EVENT_COUNT_METRIC.to_owned(),
                kind: MeasureKind::Count,
            }],
            dimensions: vec![Dimension {
                name: kind.dimension_key().to_owned(),
                field,
                // An event without a status or an entity is not counted by the reports that
                // group by them; every event has a source.
                required: kind != ReportKind::VolumeByPeriod,
            }],
            filters: Vec::new(),
        }
    }

    fn purchases_by_channel() -> Value {
        json!({
            "slug": "purchases-by-channel",
            "name": "Purchases by channel",
            "description": "",
            "measures": [{"name": "purchases", "kind": "count"},
                         {"name": "revenue_cents", "kind": "sum", "field": "amount_cents"}],
            "dimensions": [{"name": "channel", "field": "properties.channel"}],
            "filters": {"event_name": "purchase"},
            "windows": [{"window": "day", "retention_days": 365, "refresh_interval_minutes": 60, "is_default": true},
                        {"window": "week", "retention_days": 730, "refresh_interval_minutes": 240},
                        {"window": "month", "retention_days": 1825, "refresh_interval_minutes": 1440}],
            "cache_ttl_seconds": 60,
            "is_public": false
        })
    }

    fn fields_of(value: &Value) -> Vec<String> {
        RollupDefinition::parse(value)
            .expect_err("the definition is refused")
            .iter()
            .map(|e| e.field().to_owned())
            .collect()
    }

    #[test]
    fn a_distinct_measure_counts_any_field_a_dimension_may_use() {
        for field in [
            "user_id",
            "source",
            "status",
            "event_name",
            "entity_id",
            "properties.path",
        ] {
            let value = json!({"slug": "r", "measures": [
                {"name": "n", "kind": "distinct", "field": field}]});
            let definition = RollupDefinition::parse(&value).expect("valid");
            assert_eq!(
                definition.rollup.measures[0].kind,
                MeasureKind::Distinct(Field::parse("field", field).expect("a field"))
            );
            assert_eq!(
                definition.rollup.measures[0].kind.combine(),
                Combine::Distinct
            );
            assert_eq!(definition.to_json()["measures"], value["measures"]);
        }
    }

    #[test]
    fn a_full_definition_parses_and_writes_back_as_it_came() {
        let definition = RollupDefinition::parse(&purchases_by_channel()).expect("valid");
        assert_eq!(definition.slug.as_str(), "purchases-by-channel");
        assert_eq!(
            definition.rollup.measures[1].kind,
            MeasureKind::Sum(NumericField::AmountCents)
        );
        assert_eq!(
            definition.rollup.dimensions[0].field,
            Field::Property(PropertyKey("channel".to_owned()))
        );
        assert_eq!(
            definition.rollup.filters,
            [FieldFilter {
                field: Field::EventName,
                value: "purchase".to_owned()
            }]
        );
        assert_eq!(definition.default_window(), Window::Day);
        assert!(!definition.windows[2].is_default);
        let written = definition.to_json();
        assert_eq!(RollupDefinition::parse(&written), Ok(definition));
        let mut expected = purchases_by_channel();
        expected["windows"][1]["is_default"] = json!(false);
        expected["windows"][2]["is_default"] = json!(false);
        expected["dimensions"][0]["required"] = json!(false);
        assert_eq!(written, expected);
    }

    #[test]
    fn the_smallest_definition_takes_every_default() {
        let definition = RollupDefinition::parse(
            &json!({"slug": "events-by-name", "measures": [{"name": "events", "kind": "count"}],
                    "dimensions": [{"field": "event_name"}, {"field": "properties.path"}]}),
        )
        .expect("valid");
        assert_eq!(definition.name.as_str(), "events-by-name");
        assert_eq!(definition.description.as_str(), "");
        assert_eq!(definition.cache_ttl_seconds, DEFAULT_CACHE_TTL_SECONDS);
        assert!(!definition.is_public);
        assert!(definition.rollup.filters.is_empty());
        let names: Vec<&str> = definition
            .rollup
            .dimensions
            .iter()
            .map(|d| d.name.as_str())
            .collect();
        assert_eq!(names, ["event_name", "path"], "named after their fields");
        assert_eq!(
            definition.windows,
            [WindowDefinition {
                window: Window::Day,
                retention_days: 365,
                refresh_interval_minutes: 60,
                is_default: true
            }]
        );
    }

    #[test]
    fn a_read_not_by_period_tiles_its_range_with_the_coarsest_buckets() {
        let range = |from, to| DateRange::new(from, to).unwrap();
        let query = |window, from, to, by_period| RollupQuery {
            tenant: TenantId::DEFAULT,
            report: ReportSlug::parse("r").unwrap(),
            window,
            range: range(from, to),
            measures: vec![Combine::Sum],
            by_period,
            dimensions: Vec::new(),
            filters: Vec::new(),
            order: RollupOrder::Period,
            page: PageRequest::new(1, 0),
            coarser: vec![Window::Hour, Window::Day, Window::Week, Window::Month],
        };
        use time::macros::date;
        // 30 days ending Wednesday 2026-12-02: days, three weeks, days.
        let days = query(
            Window::Day,
            date!(2026 - 11 - 03),
            date!(2026 - 12 - 02),
            false,
        );
        assert_eq!(
            days.tiles(),
            [
                (
                    Window::Day,
                    range(date!(2026 - 11 - 03), date!(2026 - 11 - 08))
                ),
                (
                    Window::Week,
                    range(date!(2026 - 11 - 09), date!(2026 - 11 - 29))
                ),
                (
                    Window::Day,
                    range(date!(2026 - 11 - 30), date!(2026 - 12 - 02))
                ),
            ]
        );
        // A year: eleven months inside.
        let year = query(
            Window::Day,
            date!(2025 - 12 - 03),
            date!(2026 - 12 - 02),
            false,
        );
        let tiles = year.tiles();
        assert!(tiles.len() < 12, "{tiles:?}");
        assert!(tiles.contains(&(
            Window::Month,
            range(date!(2026 - 01 - 01), date!(2026 - 11 - 30))
        )));
        let covered: u32 = tiles.iter().map(|(_, r)| r.days()).sum();
        assert_eq!(covered, 365, "every day once");
        // By period, or without coarser windows: the window alone.
        let by_period = query(
            Window::Day,
            date!(2026 - 11 - 03),
            date!(2026 - 12 - 02),
            true,
        );
        assert!(!by_period.is_tiled());
        // Hours of whole days are days.
        let hours = query(
            Window::Hour,
            date!(2026 - 11 - 30),
            date!(2026 - 12 - 02),
            false,
        );
        assert_eq!(
            hours.tiles(),
            [(
                Window::Day,
                range(date!(2026 - 11 - 30), date!(2026 - 12 - 02))
            )]
        );
        // Weeks are not tiled by months.
        let weeks = query(
            Window::Week,
            date!(2026 - 11 - 02),
            date!(2026 - 12 - 06),
            false,
        );
        assert!(!weeks.is_tiled());
    }

    #[test]
    fn the_standard_rollups_parse_and_count_events_and_unique_users() {
        let slugs: Vec<&str> = standard_rollups().iter().map(|d| d.slug.as_str()).collect();
        assert_eq!(slugs, ["traffic", "top-paths", "events-by-name"]);
        for definition in standard_rollups() {
            let measures: Vec<(&str, &MeasureKind)> = definition
                .rollup
                .measures
                .iter()
                .map(|m| (m.name.as_str(), &m.kind))
                .collect();
            assert_eq!(
                measures,
                [
                    ("events", &MeasureKind::Count),
                    ("unique_users", &MeasureKind::Distinct(Field::UserId))
                ],
                "{}",
                definition.slug
            );
            assert!(definition.is_public);
            assert!(ReportKind::from_slug(&definition.slug).is_none());
        }
        let by_name = standard_rollup(&ReportSlug::parse("events-by-name").unwrap()).unwrap();
        assert_eq!(by_name.windows[0].window, Window::Hour);
        assert_eq!(by_name.windows[0].retention_days, 14);
        assert_eq!(by_name.default_window(), Window::Day);
        assert!(standard_rollup(&ReportSlug::parse("volume-by-period").unwrap()).is_none());
    }

    #[test]
    fn without_a_default_window_the_first_is_the_default() {
        let mut value = purchases_by_channel();
        value["windows"] = json!([{"window": "week"}, {"window": "month"}]);
        let definition = RollupDefinition::parse(&value).expect("valid");
        assert_eq!(definition.default_window(), Window::Week);
        assert_eq!(definition.windows[1].retention_days, 1_825);
    }

    #[test]
    fn every_broken_rule_is_named_by_its_field() {
        let cases: Vec<(Value, Vec<&str>)> = vec![
            (
                json!({"measures": [{"name": "n", "kind": "count"}]}),
                vec!["slug"],
            ),
            (
                json!({"slug": "Bad Slug", "measures": [{"name": "n", "kind": "count"}]}),
                vec!["slug"],
            ),
            (
                json!({"slug": "r", "name": "", "measures": [{"name": "n", "kind": "count"}]}),
                vec!["name"],
            ),
            (
                json!({"slug": "r", "description": 5, "measures": [{"name": "n", "kind": "count"}]}),
                vec!["description"],
            ),
            (json!({"slug": "r"}), vec!["measures"]),
            (json!({"slug": "r", "measures": []}), vec!["measures"]),
            (
                json!({"slug": "r", "measures": [{"name": "a", "kind": "count"}, {"name": "b", "kind": "count"},
                    {"name": "c", "kind": "count"}, {"name": "d", "kind": "count"}, {"name": "e", "kind": "count"}]}),
                vec!["measures"],
            ),
            (
                json!({"slug": "r", "measures": [{"name": "n", "kind": "avg"}]}),
                vec!["measures[0].kind"],
            ),
            (
                json!({"slug": "r", "measures": [{"kind": "count"}]}),
                vec!["measures[0].name"],
            ),
            (
                json!({"slug": "r", "measures": [{"name": "Revenue", "kind": "count"}]}),
                vec!["measures[0].name"],
            ),
            (
                json!({"slug": "r", "measures": [{"name": "limit", "kind": "count"}]}),
                vec!["measures[0].name"],
            ),
            (
                json!({"slug": "r", "measures": [{"name": "n", "kind": "count", "field": "amount_cents"}]}),
                vec!["measures[0].field"],
            ),
            (
                json!({"slug": "r", "measures": [{"name": "n", "kind": "sum"}]}),
                vec!["measures[0].field"],
            ),
            (
                json!({"slug": "r", "measures": [{"name": "n", "kind": "sum", "field": "status"}]}),
                vec!["measures[0].field"],
            ),
            (
                json!({"slug": "r", "measures": [{"name": "n", "kind": "sum", "field": "properties.a b"}]}),
                vec!["measures[0].field"],
            ),
            (
                json!({"slug": "r", "measures": [{"name": "n", "kind": "distinct"}]}),
                vec!["measures[0].field"],
            ),
            (
                json!({"slug": "r", "measures": [{"name": "n", "kind": "distinct", "field": "amount_cents"}]}),
                vec!["measures[0].field"],
            ),
            (
                json!({"slug": "r", "measures": [{"name": "n", "kind": "distinct", "field": 7}]}),
                vec!["measures[0].field"],
            ),
            (
                json!({"slug": "r", "measures": [{"name": "n", "kind": "count", "extra": 1}]}),
                vec!["measures[0].extra"],
            ),
            (
                json!({"slug": "r", "measures": ["count"]}),
                vec!["measures[0]"],
            ),
            (
                json!({"slug": "r", "measures": [{"name": "n", "kind": "count"}],
                    "dimensions": [{"field": "a"}, {"field": "b"}, {"field": "c"}, {"field": "d"}]}),
                vec!["dimensions"],
            ),
            (
                json!({"slug": "r", "measures": [{"name": "n", "kind": "count"}], "dimensions": [{"field": "colour"}]}),
                vec!["dimensions[0].field"],
            ),
            (
                json!({"slug": "r", "measures": [{"name": "n", "kind": "count"}], "dimensions": [{"field": "properties."}]}),
                vec!["dimensions[0].field"],
            ),
            (
                json!({"slug": "r", "measures": [{"name": "n", "kind": "count"}], "dimensions": [{"field": "properties.utm-source"}]}),
                vec!["dimensions[0].name"],
            ),
            (
                json!({"slug": "r", "measures": [{"name": "n", "kind": "count"}],
                    "dimensions": [{"field": "source"}, {"name": "s2", "field": "source"}]}),
                vec!["dimensions[1].field"],
            ),
            (
                json!({"slug": "r", "measures": [{"name": "source", "kind": "count"}], "dimensions": [{"field": "source"}]}),
                vec!["dimensions[0].name"],
            ),
            (
                json!({"slug": "r", "measures": [{"name": "n", "kind": "count"}, {"name": "n", "kind": "count"}]}),
                vec!["measures[1].name"],
            ),
            (
                json!({"slug": "r", "measures": [{"name": "n", "kind": "count"}], "filters": []}),
                vec!["filters"],
            ),
            (
                json!({"slug": "r", "measures": [{"name": "n", "kind": "count"}], "filters": {"status": "lost"}}),
                vec!["filters.status"],
            ),
            (
                json!({"slug": "r", "measures": [{"name": "n", "kind": "count"}], "filters": {"colour": "red"}}),
                vec!["filters.colour"],
            ),
            (
                json!({"slug": "r", "measures": [{"name": "n", "kind": "count"}], "filters": {"event_name": 5}}),
                vec!["filters.event_name"],
            ),
            (
                json!({"slug": "r", "measures": [{"name": "n", "kind": "count"}], "windows": []}),
                vec!["windows"],
            ),
            (
                json!({"slug": "r", "measures": [{"name": "n", "kind": "count"}], "windows": [{"window": "year"}]}),
                vec!["windows[0].window"],
            ),
            (
                json!({"slug": "r", "measures": [{"name": "n", "kind": "count"}], "windows": [{"window": "day"}, {"window": "day"}]}),
                vec!["windows[1].window"],
            ),
            (
                json!({"slug": "r", "measures": [{"name": "n", "kind": "count"}],
                    "windows": [{"window": "day", "is_default": true}, {"window": "week", "is_default": true}]}),
                vec!["windows[1].is_default"],
            ),
            (
                json!({"slug": "r", "measures": [{"name": "n", "kind": "count"}], "windows": [{"window": "day", "retention_days": 0}]}),
                vec!["windows[0].retention_days"],
            ),
            (
                json!({"slug": "r", "measures": [{"name": "n", "kind": "count"}], "windows": [{"window": "day", "retention_days": 1826}]}),
                vec!["windows[0].retention_days"],
            ),
            (
                json!({"slug": "r", "measures": [{"name": "n", "kind": "count"}], "windows": [{"window": "day", "refresh_interval_minutes": "60"}]}),
                vec!["windows[0].refresh_interval_minutes"],
            ),
            (
                json!({"slug": "r", "measures": [{"name": "n", "kind": "count"}], "cache_ttl_seconds": -1}),
                vec!["cache_ttl_seconds"],
            ),
            (
                json!({"slug": "r", "measures": [{"name": "n", "kind": "count"}], "is_public": "yes"}),
                vec!["is_public"],
            ),
            (
                json!({"slug": "r", "measures": [{"name": "n", "kind": "count"}], "kind": "top"}),
                vec!["kind"],
            ),
        ];
        for (value, expected) in cases {
            assert_eq!(fields_of(&value), expected, "{value}");
        }
        assert_eq!(
            RollupDefinition::parse(&json!([])).unwrap_err()[0].field(),
            "body"
        );
    }

    #[test]
    fn all_errors_of_a_definition_come_together() {
        let fields = fields_of(&json!({
            "slug": "R",
            "measures": [{"name": "n", "kind": "avg"}],
            "dimensions": [{"field": "colour"}],
            "windows": [{"window": "year"}],
            "colour": 1
        }));
        assert_eq!(
            fields,
            [
                "colour",
                "slug",
                "measures[0].kind",
                "dimensions[0].field",
                "windows[0].window"
            ]
        );
    }

    #[test]
    fn filter_values_are_checked_and_normalised_for_their_field() {
        let mut value = purchases_by_channel();
        value["filters"] = json!({"status": "SUCCESS", "source": "shop", "properties.plan": "pro"});
        let definition = RollupDefinition::parse(&value).expect("valid");
        let filters: Vec<(String, &str)> = definition
            .rollup
            .filters
            .iter()
            .map(|f| (f.field.name(), f.value.as_str()))
            .collect();
        assert_eq!(
            filters,
            [
                ("source".to_owned(), "shop"),
                ("status".to_owned(), "success"),
                ("properties.plan".to_owned(), "pro")
            ]
        );
    }

    #[test]
    fn a_dimension_may_be_required_and_nothing_else() {
        let mut value = purchases_by_channel();
        value["dimensions"][0]["required"] = json!(true);
        let definition = RollupDefinition::parse(&value).expect("valid");
        assert!(definition.rollup.dimensions[0].required);
        value["dimensions"][0]["required"] = json!("yes");
        let errors = RollupDefinition::parse(&value).unwrap_err();
        assert_eq!(errors[0].field(), "dimensions[0].required");
    }

    #[test]
    fn the_builtin_seed_files_are_valid_definitions_of_each_reports_shape() {
        let at = datetime!(2026-01-01 0:00 UTC);
        for kind in ReportKind::ALL {
            let seed = parse_builtin(kind).expect("the seed file is a valid definition");
            let reference = ReportDefinition::reference(kind, at);
            assert_eq!(seed.slug, reference.slug, "{kind:?}");
            assert_eq!(seed.windows, reference.windows, "{kind:?}");
            assert_eq!(seed.rollup, of_kind(kind), "{kind:?}");
            assert_eq!(
                RollupDefinition::parse(&seed.to_json()),
                Ok(seed),
                "{kind:?} round-trips"
            );
        }
    }
}
