//! The one error every parser in this crate returns.

use std::fmt;

/// Input that does not satisfy a domain rule, with the name of the offending field.
///
/// The HTTP layer turns this into a 400 `invalid_request` whose `details.field` is `field`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ValidationError {
    field: String,
    message: String,
}

impl ValidationError {
    /// A violation of a rule on `field`, described by `message` (a full sentence fragment that
    /// names the allowed values where there is a fixed set of them).
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }

    /// The request field that broke the rule.
    pub fn field(&self) -> &str {
        &self.field
    }

    /// What was wrong, without the field name.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}
