//! Translating driver errors into the ports' error variants.

use application::ports::{RunStoreError, StoreError};
use tokio_postgres::error::SqlState;

/// A driver or pool failure, classified.
pub(crate) enum Failure {
    /// The server cannot be reached, the connection broke, or the pool timed out.
    Unavailable(anyhow::Error),
    /// A unique constraint refused the write.
    UniqueViolation(anyhow::Error),
    /// Anything else.
    Unexpected(anyhow::Error),
}

impl Failure {
    pub(crate) fn from_pg(err: tokio_postgres::Error, context: &'static str) -> Self {
        let unique = err.code() == Some(&SqlState::UNIQUE_VIOLATION);
        let io =
            std::error::Error::source(&err).is_some_and(|source| source.is::<std::io::Error>());
        let lost = err.is_closed()
            || io
            || matches!(
                err.code(),
                Some(c) if *c == SqlState::ADMIN_SHUTDOWN
                    || *c == SqlState::CANNOT_CONNECT_NOW
                    || *c == SqlState::CONNECTION_FAILURE
                    || *c == SqlState::QUERY_CANCELED
                    || *c == SqlState::TOO_MANY_CONNECTIONS
            );
        let err = anyhow::Error::new(err).context(context);
        if unique {
            Failure::UniqueViolation(err)
        } else if lost {
            Failure::Unavailable(err)
        } else {
            Failure::Unexpected(err)
        }
    }

    pub(crate) fn from_pool(err: deadpool_postgres::PoolError, context: &'static str) -> Self {
        Failure::Unavailable(anyhow::Error::new(err).context(context))
    }
}

impl From<Failure> for StoreError {
    fn from(failure: Failure) -> Self {
        match failure {
            Failure::Unavailable(e) => StoreError::Unavailable(e),
            Failure::UniqueViolation(e) | Failure::Unexpected(e) => StoreError::Unexpected(e),
        }
    }
}

impl From<Failure> for RunStoreError {
    fn from(failure: Failure) -> Self {
        match failure {
            Failure::Unavailable(e) => RunStoreError::Unavailable(e),
            Failure::UniqueViolation(_) => RunStoreError::ActiveScope,
            Failure::Unexpected(e) => RunStoreError::Unexpected(e),
        }
    }
}

/// Shorthand: run a query-returning future and classify its error.
pub(crate) trait PgResultExt<T> {
    fn classify(self, context: &'static str) -> Result<T, Failure>;
}

impl<T> PgResultExt<T> for Result<T, tokio_postgres::Error> {
    fn classify(self, context: &'static str) -> Result<T, Failure> {
        self.map_err(|err| Failure::from_pg(err, context))
    }
}

impl<T> PgResultExt<T> for Result<T, deadpool_postgres::PoolError> {
    fn classify(self, context: &'static str) -> Result<T, Failure> {
        self.map_err(|err| Failure::from_pool(err, context))
    }
}

/// A column that held a value the domain refuses: the database was written by something else.
/// Runs `delete`, a statement deleting at most `$N` rows (`batch`, its last parameter), again
/// and again until it deletes fewer: a bulk deletion in bounded statements, each its own
/// transaction, so it never holds many row locks or a long transaction. Returns the rows
/// deleted.
pub(crate) async fn delete_in_batches(
    client: &deadpool_postgres::Client,
    delete: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    batch: u32,
    context: &'static str,
) -> Result<u64, Failure> {
    let limit = i64::from(batch.max(1));
    let mut all: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = params.to_vec();
    all.push(&limit);
    let mut deleted = 0;
    loop {
        let rows = client.execute(delete, &all).await.classify(context)?;
        deleted += rows;
        if rows < limit.unsigned_abs() {
            return Ok(deleted);
        }
    }
}

pub(crate) fn corrupt(what: &str, err: impl std::fmt::Display) -> Failure {
    Failure::Unexpected(anyhow::anyhow!("unreadable {what} in the database: {err}"))
}
