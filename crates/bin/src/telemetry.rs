//! Logging: `tracing` with the `RUST_LOG` filter, pretty or JSON lines; and, in a build with the
//! `otlp` feature, the same spans exported over OTLP/HTTP when `OTEL_EXPORTER_OTLP_ENDPOINT` is
//! set.

use tracing_subscriber::{EnvFilter, fmt, layer::SubscriberExt, util::SubscriberInitExt};

use crate::config::{LogConfig, LogFormat};

/// What [`init`] started that must see the process out: the span exporter, which sends the
/// spans it still holds and stops when this is dropped. Keep it until the process exits.
#[derive(Debug, Default)]
#[must_use = "dropping it stops the span export"]
pub struct Telemetry {
    #[cfg(feature = "otlp")]
    provider: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
}

#[cfg(feature = "otlp")]
impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take()
            && let Err(err) = provider.shutdown()
        {
            tracing::warn!(error = %err, "the last spans could not be exported");
        }
    }
}

/// Installs the global subscriber, with the span exporter when `OTEL_EXPORTER_OTLP_ENDPOINT`
/// is set (nothing more when it is not).
///
/// # Errors
/// When `RUST_LOG` is not a valid filter, when `OTEL_EXPORTER_OTLP_ENDPOINT` is not an http://
/// URL, or when a subscriber is already installed.
pub fn init(config: &LogConfig) -> anyhow::Result<Telemetry> {
    let filter =
        EnvFilter::try_new(&config.rust_log).map_err(|err| anyhow::anyhow!("RUST_LOG: {err}"))?;
    let endpoint = config
        .otel_exporter_otlp_endpoint
        .as_deref()
        .map(str::trim)
        .filter(|endpoint| !endpoint.is_empty());
    #[cfg(feature = "otlp")]
    let (export, telemetry) = match endpoint {
        Some(endpoint) => {
            let provider = otlp::provider(endpoint, &config.otel_service_name)?;
            (
                Some(otlp::layer(&provider)),
                Telemetry {
                    provider: Some(provider),
                },
            )
        }
        None => (None, Telemetry::default()),
    };
    #[cfg(not(feature = "otlp"))]
    let (export, telemetry) = (
        None::<tracing_subscriber::layer::Identity>,
        Telemetry::default(),
    );
    let registry = tracing_subscriber::registry().with(filter).with(export);
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
    if endpoint.is_some() && !cfg!(feature = "otlp") {
        tracing::warn!(
            "OTEL_EXPORTER_OTLP_ENDPOINT is set, but this build has no OTLP exporter; build with --features otlp"
        );
    }
    Ok(telemetry)
}

/// The OTLP/HTTP span exporter and the layers feeding it.
#[cfg(feature = "otlp")]
mod otlp {
    use std::fmt;

    use anyhow::{Context as _, bail};
    use opentelemetry::{
        Context,
        trace::{
            SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState, TracerProvider,
        },
    };
    use opentelemetry_otlp::{Protocol, WithExportConfig};
    use opentelemetry_sdk::{Resource, trace::SdkTracerProvider};
    use tracing::{
        Subscriber,
        field::{Field, Visit},
        span,
    };
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    use tracing_subscriber::{Layer, layer, registry::LookupSpan};

    /// Where OTLP/HTTP takes spans, under the collector's base URL.
    const TRACES_PATH: &str = "v1/traces";

    /// The fields of the trace context, as the request middleware records them.
    const TRACE_ID_FIELD: &str = "trace_id";
    const PARENT_ID_FIELD: &str = "parent_id";
    const SAMPLED_FIELD: &str = "sampled";

    /// A tracer provider batching spans to `endpoint`'s `/v1/traces`, protobuf-encoded, from a
    /// thread of its own.
    pub(super) fn provider(
        endpoint: &str,
        service_name: &str,
    ) -> anyhow::Result<SdkTracerProvider> {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(traces_url(endpoint)?)
            .build()
            .context("OTEL_EXPORTER_OTLP_ENDPOINT")?;
        let resource = Resource::builder()
            .with_service_name(service_name.to_owned())
            .build();
        Ok(SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(resource)
            .build())
    }

    /// The traces URL of a collector's base URL: the base with `v1/traces` appended after a
    /// slash, as the OTLP exporter specification says for `OTEL_EXPORTER_OTLP_ENDPOINT`.
    fn traces_url(endpoint: &str) -> anyhow::Result<String> {
        if endpoint.starts_with("https://") {
            bail!(
                "OTEL_EXPORTER_OTLP_ENDPOINT: this build has no TLS; use an http:// URL (a collector next to the process)"
            );
        }
        if !endpoint.starts_with("http://") {
            bail!("OTEL_EXPORTER_OTLP_ENDPOINT: must be an http:// URL");
        }
        Ok(format!("{}/{TRACES_PATH}", endpoint.trim_end_matches('/')))
    }

    /// The layers exporting spans through `provider`: the one that puts request spans in their
    /// trace, then the export itself.
    pub(super) fn layer<S>(provider: &SdkTracerProvider) -> impl Layer<S>
    where
        S: Subscriber + for<'span> LookupSpan<'span>,
    {
        let tracer = provider.tracer(env!("CARGO_PKG_NAME"));
        ContinuedTrace.and_then(tracing_opentelemetry::layer().with_tracer(tracer))
    }

    /// Puts each root span with a `trace_id` field (the request span) in that trace: its
    /// OpenTelemetry parent becomes a remote span of the trace, so the exported span and its
    /// children carry the trace id the logs and the response's `traceparent` show, the caller's
    /// when it sent one.
    ///
    /// A trace this process started has no caller's span: see [`remote_parent`].
    struct ContinuedTrace;

    /// The remote parent of a span, until its first entry.
    struct RemoteParent(SpanContext);

    impl<S> Layer<S> for ContinuedTrace
    where
        S: Subscriber + for<'span> LookupSpan<'span>,
    {
        fn on_new_span(
            &self,
            attrs: &span::Attributes<'_>,
            id: &span::Id,
            ctx: layer::Context<'_, S>,
        ) {
            let Some(span) = ctx.span(id) else {
                return;
            };
            if span.parent().is_some() {
                return;
            }
            let mut fields = TraceFields::default();
            attrs.record(&mut fields);
            if let Some(trace_id) = fields.trace_id {
                span.extensions_mut().insert(RemoteParent(remote_parent(
                    trace_id,
                    fields.parent_id,
                    fields.sampled,
                )));
            }
        }

        fn on_enter(&self, id: &span::Id, ctx: layer::Context<'_, S>) {
            let Some(span) = ctx.span(id) else {
                return;
            };
            let parent = span.extensions_mut().remove::<RemoteParent>();
            let Some(RemoteParent(parent)) = parent else {
                return;
            };
            // The export layer, after this one, starts the span on its first entry: until then
            // its parent can still be set. The span entered is the current one.
            let current = tracing::Span::current();
            if current.id().as_ref() == Some(id) {
                // It fails only when the span was started earlier, which nothing here does.
                let _ = current.set_parent(Context::new().with_remote_span_context(parent));
            }
        }
    }

    /// The remote span of `trace_id` a request span continues: the caller's span `parent_id`
    /// with its sampling decision, or, for a trace this process started, a sampled stand-in
    /// whose id is the trace id's last 8 bytes (the OpenTelemetry SDK takes a trace id only
    /// from a parent).
    fn remote_parent(trace_id: TraceId, parent_id: Option<SpanId>, sampled: bool) -> SpanContext {
        let span_id = parent_id.unwrap_or_else(|| {
            let bytes = trace_id.to_bytes();
            let mut low = [0; 8];
            low.copy_from_slice(&bytes[8..]);
            match u64::from_be_bytes(low) {
                0 => SpanId::from(1),
                id => SpanId::from(id),
            }
        });
        let flags = if sampled {
            TraceFlags::SAMPLED
        } else {
            TraceFlags::default()
        };
        SpanContext::new(trace_id, span_id, flags, true, TraceState::default())
    }

    /// The trace context the request middleware records on its span: `trace_id` (32 hex
    /// digits, not all zeros), the caller's `parent_id` (16 hex digits) and `sampled`.
    struct TraceFields {
        trace_id: Option<TraceId>,
        parent_id: Option<SpanId>,
        sampled: bool,
    }

    impl Default for TraceFields {
        fn default() -> Self {
            Self {
                trace_id: None,
                parent_id: None,
                sampled: true,
            }
        }
    }

    impl TraceFields {
        fn set(&mut self, name: &str, text: &str) {
            let hex = |len: usize| text.len() == len && text.bytes().all(|b| b.is_ascii_hexdigit());
            match name {
                TRACE_ID_FIELD => {
                    self.trace_id = hex(32)
                        .then(|| TraceId::from_hex(text).ok())
                        .flatten()
                        .filter(|trace_id| *trace_id != TraceId::INVALID);
                }
                PARENT_ID_FIELD => {
                    self.parent_id = hex(16)
                        .then(|| SpanId::from_hex(text).ok())
                        .flatten()
                        .filter(|span_id| *span_id != SpanId::INVALID);
                }
                _ => {}
            }
        }
    }

    impl Visit for TraceFields {
        fn record_str(&mut self, field: &Field, value: &str) {
            self.set(field.name(), value);
        }

        fn record_bool(&mut self, field: &Field, value: bool) {
            if field.name() == SAMPLED_FIELD {
                self.sampled = value;
            }
        }

        fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
            if field.name() == TRACE_ID_FIELD || field.name() == PARENT_ID_FIELD {
                self.set(field.name(), &format!("{value:?}"));
            }
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn the_traces_path_is_appended_to_the_base_url() {
            assert_eq!(
                traces_url("http://127.0.0.1:4318").unwrap(),
                "http://127.0.0.1:4318/v1/traces"
            );
            assert_eq!(
                traces_url("http://collector:4318/otlp/").unwrap(),
                "http://collector:4318/otlp/v1/traces"
            );
            assert!(traces_url("https://collector:4318").is_err());
            assert!(traces_url("collector:4318").is_err());
        }

        fn fields(trace_id: &str, parent_id: Option<&str>) -> TraceFields {
            let mut fields = TraceFields::default();
            fields.set(TRACE_ID_FIELD, trace_id);
            if let Some(parent_id) = parent_id {
                fields.set(PARENT_ID_FIELD, parent_id);
            }
            fields
        }

        #[test]
        fn only_ids_of_the_right_hex_length_are_continued() {
            let good = fields("4bf92f3577b34da6a3ce929d0e0e4736", Some("00f067aa0ba902b7"));
            assert_eq!(
                good.trace_id,
                Some(TraceId::from(0x4bf9_2f35_77b3_4da6_a3ce_929d_0e0e_4736))
            );
            assert_eq!(good.parent_id, Some(SpanId::from(0x00f0_67aa_0ba9_02b7)));
            for bad in [
                "",
                "00000000000000000000000000000000",
                "4bf92f3577b34da6a3ce929d0e0e473",
                "+bf92f3577b34da6a3ce929d0e0e4736",
            ] {
                assert_eq!(fields(bad, None).trace_id, None, "{bad:?}");
            }
            let zero = fields("4bf92f3577b34da6a3ce929d0e0e4736", Some("0000000000000000"));
            assert_eq!(zero.parent_id, None);
        }

        #[test]
        fn the_remote_parent_is_the_callers_span_with_its_sampling() {
            let trace_id = TraceId::from(0x4bf9_2f35_77b3_4da6_a3ce_929d_0e0e_4736);
            let caller = SpanId::from(0x00f0_67aa_0ba9_02b7);
            let continued = remote_parent(trace_id, Some(caller), false);
            assert!(continued.is_valid() && continued.is_remote() && !continued.is_sampled());
            assert_eq!(continued.span_id(), caller);
            let started = remote_parent(trace_id, None, true);
            assert!(started.is_valid() && started.is_sampled());
            assert_eq!(started.trace_id(), trace_id);
            assert!(remote_parent(TraceId::from(1 << 64), None, true).is_valid());
        }
    }
}
