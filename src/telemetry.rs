//! Logging and tracing setup. Log lines and spans carry ids, counts and rule names; never
//! personal data.
//!
//! Traces are off unless `telemetry.traces.otlp_endpoint` is set. Then tracing's spans of
//! the hub's own crates (targets `himaya*`, level info and above, whatever the log
//! filter) also become OpenTelemetry spans, batched in memory (a bounded queue: a full
//! queue drops spans, it never holds a request up) and posted as OTLP/HTTP protobuf to
//! `<otlp_endpoint>/v1/traces` from a thread of their own. See docs/architecture.md,
//! "Traces".

use std::time::Duration;

use anyhow::Context as _;
use himaya_settings::{LogFormat, TelemetrySettings, TraceSettings};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{Protocol, WithExportConfig as _};
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, Sampler, SdkTracer, SdkTracerProvider,
};
use tracing_opentelemetry::OpenTelemetryLayer;
use tracing_subscriber::filter::{EnvFilter, LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::Layer as _;

/// What must be flushed before the process ends: the spans still in the batch.
#[must_use = "call `shutdown` before the process ends, or the last spans are lost"]
pub struct Telemetry {
    traces: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Sends the spans still waiting and stops the exporter (at most 5 s).
    pub async fn shutdown(self) {
        let Some(provider) = self.traces else {
            return;
        };
        // The provider's shutdown blocks until its exporting thread is done.
        let done = tokio::task::spawn_blocking(move || {
            provider.shutdown_with_timeout(Duration::from_secs(5))
        })
        .await;
        match done {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("himaya: the last spans may be lost: {e}"),
            Err(_) => eprintln!("himaya: the last spans may be lost: the flush panicked"),
        }
    }
}

/// Installs the global subscriber; `RUST_LOG` overrides the configured log filter.
/// `service` names this process in its spans unless `telemetry.traces.service_name` does.
/// Fails only when traces are configured and their exporter cannot be built.
pub fn init(t: &TelemetrySettings, service: &str) -> anyhow::Result<Telemetry> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&t.filter));
    let provider = if t.traces.enabled() {
        Some(provider(&t.traces, service)?)
    } else {
        None
    };
    // Spans of the hub's own crates only: a span of sqlx, lapin or hyper would name no
    // referral. They follow their own level, not the log filter, so that quieter logs do
    // not cut traces apart.
    let otel = provider
        .as_ref()
        .map(|p| trace_layer(p).with_filter(trace_targets()));
    let registry = tracing_subscriber::registry().with(otel);
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let _ = match t.format {
        LogFormat::Json => registry.with(fmt.json().with_filter(filter)).try_init(),
        LogFormat::Pretty => registry.with(fmt.compact().with_filter(filter)).try_init(),
    };
    if provider.is_some() {
        tracing::info!(
            endpoint = %without_credentials(&t.traces.traces_url()),
            service = %service_name(&t.traces, service),
            sample_ratio = t.traces.sample_ratio,
            "sending traces over OTLP/HTTP"
        );
    }
    Ok(Telemetry { traces: provider })
}

/// The layer turning tracing's spans into OpenTelemetry spans of `provider` (no code
/// locations or thread names: ids and counts are what a span is for here).
pub fn trace_layer<S>(provider: &SdkTracerProvider) -> OpenTelemetryLayer<S, SdkTracer>
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
{
    tracing_opentelemetry::layer()
        .with_tracer(provider.tracer("himaya"))
        .with_location(false)
        .with_threads(false)
}

/// Which spans are traced: the hub's own crates' (targets `himaya*`), info and above.
pub fn trace_targets() -> Targets {
    Targets::new().with_target("himaya", LevelFilter::INFO)
}

fn service_name(t: &TraceSettings, service: &str) -> String {
    if t.service_name.trim().is_empty() {
        service.to_owned()
    } else {
        t.service_name.trim().to_owned()
    }
}

/// The tracer provider: parent-based sampling (a caller's decision is kept, new traces
/// kept at `sample_ratio`), a bounded batch, OTLP/HTTP protobuf. Shut it down (see
/// [`Telemetry::shutdown`]) to send what it still holds.
pub fn provider(t: &TraceSettings, service: &str) -> anyhow::Result<SdkTracerProvider> {
    // The exporter's reqwest client takes rustls's process-wide provider (ring), and
    // cannot be built without one (see Cargo.toml, reqwest).
    himaya_connect::install_crypto_provider();
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(t.traces_url())
        .with_timeout(Duration::from_millis(t.export_timeout_ms))
        .build()
        .context("telemetry.traces.otlp_endpoint: cannot build the OTLP/HTTP exporter")?;
    let batch = BatchConfigBuilder::default()
        .with_max_queue_size(t.max_queue_size)
        .with_max_export_batch_size(t.max_export_batch_size)
        .with_scheduled_delay(Duration::from_millis(t.scheduled_delay_ms))
        .build();
    let processor = BatchSpanProcessor::builder(exporter)
        .with_batch_config(batch)
        .build();
    let sampler = Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(t.sample_ratio)));
    Ok(SdkTracerProvider::builder()
        .with_span_processor(processor)
        .with_sampler(sampler)
        .with_resource(
            opentelemetry_sdk::Resource::builder()
                .with_service_name(service_name(t, service))
                .build(),
        )
        .build())
}

/// `url` as it may be logged: without a `user:password@` part, a query or a fragment
/// (a collector's token may ride in either).
fn without_credentials(url: &str) -> String {
    let url = url.split(['?', '#']).next().unwrap_or_default();
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let host = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    format!("{scheme}://{host}{path}")
}

#[cfg(test)]
mod credentials {
    #[test]
    fn a_logged_collector_address_carries_no_credentials() {
        assert_eq!(
            super::without_credentials("https://user:s3cret@otel.example:4318/v1/traces?token=x"),
            "https://otel.example:4318/v1/traces"
        );
        assert_eq!(
            super::without_credentials("http://127.0.0.1:4318/v1/traces"),
            "http://127.0.0.1:4318/v1/traces"
        );
    }
}
