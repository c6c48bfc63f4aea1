//! Tenants, their event sources and their API keys.

use std::{fmt, str::FromStr};

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::{SourceSlug, TenantId, ValidationError};

crate::event::slug_type!(
    /// The slug of a tenant (`default`, `acme`, ...).
    TenantSlug,
    "tenant"
);

impl TenantSlug {
    /// The slug of the tenant every deployment has.
    pub const DEFAULT: &str = "default";

    /// Parses a tenant slug for `field`.
    ///
    /// # Errors
    /// A [`ValidationError`] on `field` when `raw` is not a slug.
    pub fn parse(field: &str, raw: &str) -> Result<Self, ValidationError> {
        Self::parse_for(field, raw)
    }

    /// The `default` tenant's slug.
    pub fn default_tenant() -> Self {
        Self(Self::DEFAULT.to_owned())
    }
}

/// A tenant as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tenant {
    pub id: TenantId,
    pub slug: TenantSlug,
    pub name: String,
    pub created_at: OffsetDateTime,
}

/// An upstream provider of a tenant's events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventSource {
    pub tenant: TenantId,
    pub slug: SourceSlug,
    pub provider_name: String,
    pub description: String,
    pub is_active: bool,
    pub created_at: OffsetDateTime,
}

/// Checks a display name (tenant or provider): 1 to 200 characters after trimming.
///
/// # Errors
/// A [`ValidationError`] on `field`.
pub fn parse_name(field: &str, raw: &str) -> Result<String, ValidationError> {
    let name = raw.trim();
    if name.is_empty() || name.chars().count() > 200 || name.chars().any(char::is_control) {
        return Err(ValidationError::new(
            field,
            "must be 1 to 200 printable characters",
        ));
    }
    Ok(name.to_owned())
}

/// The longest description of a source, in characters.
pub const MAX_DESCRIPTION_LEN: usize = 1_000;

/// Checks a free-text description: at most [`MAX_DESCRIPTION_LEN`] characters after trimming,
/// where line breaks and tabs are the only control characters allowed (PostgreSQL cannot store
/// U+0000 in text at all). Blank is allowed and means none.
///
/// # Errors
/// A [`ValidationError`] on `field`.
pub fn parse_description(field: &str, raw: &str) -> Result<String, ValidationError> {
    let text = raw.trim();
    if text.chars().count() > MAX_DESCRIPTION_LEN {
        return Err(ValidationError::new(
            field,
            format!("must be at most {MAX_DESCRIPTION_LEN} characters"),
        ));
    }
    if text
        .chars()
        .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
    {
        return Err(ValidationError::new(
            field,
            "must not contain control characters other than line breaks and tabs",
        ));
    }
    Ok(text.to_owned())
}

/// What an API key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Send events.
    Ingest,
    /// Read the tenant's reports.
    Read,
    /// Trigger and watch recomputes, read the audit trail, manage sources.
    Manage,
}

impl Scope {
    /// Every scope.
    pub const ALL: [Scope; 3] = [Scope::Ingest, Scope::Read, Scope::Manage];

    /// The lowercase name stored and shown.
    pub const fn as_str(self) -> &'static str {
        match self {
            Scope::Ingest => "ingest",
            Scope::Read => "read",
            Scope::Manage => "manage",
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Scope {
    type Err = ValidationError;

    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        Scope::ALL
            .into_iter()
            .find(|scope| scope.as_str().eq_ignore_ascii_case(raw.trim()))
            .ok_or_else(|| {
                ValidationError::new(
                    "scope",
                    format!("must be one of: ingest, read, manage; got {raw:?}"),
                )
            })
    }
}

/// An API key as stored: never the key itself, only its hash and a recognisable prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKey {
    pub id: i64,
    pub tenant: TenantId,
    pub prefix: String,
    pub scopes: Vec<Scope>,
    pub name: String,
    pub created_at: OffsetDateTime,
    pub revoked_at: Option<OffsetDateTime>,
}

impl ApiKey {
    /// Whether the key is usable and has `scope`.
    pub fn allows(&self, scope: Scope) -> bool {
        self.revoked_at.is_none() && self.scopes.contains(&scope)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_parse_and_a_revoked_key_allows_nothing() {
        assert_eq!("Read".parse::<Scope>(), Ok(Scope::Read));
        assert!("admin".parse::<Scope>().is_err());
        let mut key = ApiKey {
            id: 1,
            tenant: TenantId::DEFAULT,
            prefix: "pga_12345678".into(),
            scopes: vec![Scope::Ingest],
            name: String::new(),
            created_at: time::macros::datetime!(2026-11-21 12:00 UTC),
            revoked_at: None,
        };
        assert!(key.allows(Scope::Ingest) && !key.allows(Scope::Read));
        key.revoked_at = Some(key.created_at);
        assert!(
            !key.allows(Scope::Ingest),
            "revocation takes effect at once"
        );
    }

    #[test]
    fn tenant_slugs_and_names_are_checked() {
        assert!(TenantSlug::parse("tenant", " acme ").is_ok());
        assert!(TenantSlug::parse("tenant", "Acme Inc").is_err());
        assert!(parse_name("name", "  ").is_err());
        assert_eq!(parse_name("name", " Acme ").unwrap(), "Acme");
        assert!(parse_name("name", "a\u{0}b").is_err(), "U+0000");
    }

    #[test]
    fn descriptions_keep_line_breaks_but_no_other_control_character() {
        assert_eq!(
            parse_description("description", " two\nlines\t. ").unwrap(),
            "two\nlines\t."
        );
        assert_eq!(parse_description("description", "").unwrap(), "");
        for bad in ["a\u{0}b", "bell\u{7}", "del\u{7f}"] {
            let err = parse_description("description", bad).expect_err("refused");
            assert_eq!(err.field(), "description", "{bad:?}");
        }
        assert!(parse_description("description", &"x".repeat(1_001)).is_err());
    }
}
