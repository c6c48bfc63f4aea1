//! Logging: `tracing` with the `RUST_LOG` filter, pretty or JSON lines.

use tracing_subscriber::{EnvFilter, fmt, layer::SubscriberExt, util::SubscriberInitExt};

use crate::config::{LogConfig, LogFormat};

/// Installs the global subscriber.
///
/// # Errors
/// When `RUST_LOG` is not a valid filter or a subscriber is already installed.
pub fn init(config: &LogConfig) -> anyhow::Result<()> {
    let filter =
        EnvFilter::try_new(&config.rust_log).map_err(|err| anyhow::anyhow!("RUST_LOG: {err}"))?;
    let registry = tracing_subscriber::registry().with(filter);
    match config.log_format {
        LogFormat::Json => registry
            .with(
                fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(true)
                    .with_span_list(false),
            )
            .try_init()?,
        // Colours only for a terminal: piped or redirected logs stay plain text.
        LogFormat::Pretty => registry
            .with(
                fmt::layer()
                    .compact()
                    .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout())),
            )
            .try_init()?,
    }
    Ok(())
}
