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

/// A display name (of a tenant or a provider): 1 to 200 printable characters, trimmed.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DisplayName(String);

impl DisplayName {
    /// The longest name, in characters.
    pub const MAX_LEN: usize = 200;

    /// Parses the name given as `field`.
    ///
    /// # Errors
    /// A [`ValidationError`] on `field` when `raw` is blank, too long or holds a control
    /// character.
    pub fn parse(field: &str, raw: &str) -> Result<Self, ValidationError> {
        let name = raw.trim();
        if name.is_empty()
            || name.chars().count() > Self::MAX_LEN
            || name.chars().any(char::is_control)
        {
            return Err(ValidationError::new(
                field,
                "must be 1 to 200 printable characters",
            ));
        }
        Ok(Self(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for DisplayName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Free text describing something (a source, a key): at most
/// [`MAX_LEN`](Description::MAX_LEN) characters after trimming, where line breaks and tabs are
/// the only control characters allowed (PostgreSQL cannot store U+0000 in text at all). Blank
/// is allowed and means none.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Description(String);

impl Description {
    /// The longest description, in characters.
    pub const MAX_LEN: usize = 1_000;

    /// Parses the text given as `field`.
    ///
    /// # Errors
    /// A [`ValidationError`] on `field` when `raw` is too long or holds a control character
    /// other than a line break or a tab.
    pub fn parse(field: &str, raw: &str) -> Result<Self, ValidationError> {
        let text = raw.trim();
        if text.chars().count() > Self::MAX_LEN {
            return Err(ValidationError::new(
                field,
                format!("must be at most {} characters", Self::MAX_LEN),
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
        Ok(Self(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Description {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The SHA-256 of an API key as 64 lowercase hex digits: what is stored and looked up, never
/// the key.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct KeyHash(String);

impl KeyHash {
    /// The hash of a key from its SHA-256 digest.
    pub fn from_digest(digest: [u8; 32]) -> Self {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut hex = String::with_capacity(64);
        for byte in digest {
            hex.push(char::from(DIGITS[usize::from(byte >> 4)]));
            hex.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
        }
        Self(hex)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for KeyHash {
    /// A hash is not a secret, but the first digits are enough to tell two apart in a log.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyHash({}…)", &self.0[..8])
    }
}

/// The visible start of an API key (`pga_1a2b3c4d`), by which a tenant's key is shown and
/// revoked.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct KeyPrefix(String);

impl KeyPrefix {
    /// How many characters of a key its prefix keeps.
    pub const LEN: usize = 12;

    /// The prefix of `key`.
    pub fn of(key: &str) -> Self {
        Self(key.chars().take(Self::LEN).collect())
    }

    /// Parses a prefix given as `field`, trimmed.
    ///
    /// # Errors
    /// A [`ValidationError`] on `field` when `raw` is blank, longer than a prefix or holds
    /// white space or a control character.
    pub fn parse(field: &str, raw: &str) -> Result<Self, ValidationError> {
        let prefix = raw.trim();
        if prefix.is_empty()
            || prefix.chars().count() > Self::LEN
            || prefix.chars().any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(ValidationError::new(
                field,
                format!("must be the first {} characters of a key", Self::LEN),
            ));
        }
        Ok(Self(prefix.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for KeyPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
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
        assert!(DisplayName::parse("name", "  ").is_err());
        assert_eq!(
            DisplayName::parse("name", " Acme ").unwrap().as_str(),
            "Acme"
        );
        assert!(DisplayName::parse("name", "a\u{0}b").is_err(), "U+0000");
    }

    #[test]
    fn descriptions_keep_line_breaks_but_no_other_control_character() {
        assert_eq!(
            Description::parse("description", " two\nlines\t. ")
                .unwrap()
                .as_str(),
            "two\nlines\t."
        );
        assert_eq!(Description::parse("description", "").unwrap().as_str(), "");
        for bad in ["a\u{0}b", "bell\u{7}", "del\u{7f}"] {
            let err = Description::parse("description", bad).expect_err("refused");
            assert_eq!(err.field(), "description", "{bad:?}");
        }
        assert!(Description::parse("description", &"x".repeat(1_001)).is_err());
    }
}
