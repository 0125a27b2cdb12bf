//! OpenTelemetry export of a node's spans over OTLP/gRPC (`serve
//! --otlp-endpoint`): queries, ingest calls, device polls and Raft
//! proposals, each trace marked with the node that made it
//! (`service.instance.id` in its resource). Spans go out in batches from a
//! background thread; when the collector is slow or gone, the batch queue
//! drops spans rather than slow the node (OpenTelemetry's own batch
//! processor).
//!
//! Built with the cargo feature `otlp` (on by default); a binary built
//! without it refuses `--otlp-endpoint` at start-up instead of ignoring it.
//! Knows tracing and OpenTelemetry only: nothing of what the spans measure.

use tracing::Subscriber;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

/// The spans exported: one query (parse to last row), one ingest call,
/// one poll of one device, one Raft proposal (to its commit and apply).
pub const EXPORTED_SPANS: [&str; 4] = ["query", "ingest", "poll", "propose"];

/// Where and how much to export.
#[derive(Clone, Debug)]
pub struct OtlpOptions {
    /// The collector's OTLP/gRPC address, `http://HOST:PORT`.
    pub endpoint: String,
    /// The share of traces kept, 0 to 1 (a trace's spans are kept or
    /// dropped together).
    pub sample_ratio: f64,
}

/// A running export; [`Export::shutdown`] sends what is still queued.
pub struct Export {
    #[cfg(feature = "otlp")]
    provider: opentelemetry_sdk::trace::SdkTracerProvider,
}

/// Checks `--otlp-endpoint`: an `http://HOST:PORT` address.
pub fn parse_endpoint(s: &str) -> Result<String, String> {
    let rest = match s.split_once("://") {
        Some(("http", rest)) => rest,
        Some(("https", _)) => {
            return Err(format!(
                "'{s}': TLS to the collector is not supported; run an OpenTelemetry collector \
                 on this machine or its network and give its http:// address"
            ))
        }
        _ => return Err(format!("'{s}' is not an http://HOST:PORT address")),
    };
    let authority = rest.trim_end_matches('/');
    match authority.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => {
            Ok(format!("http://{authority}"))
        }
        _ => Err(format!(
            "'{s}': give the collector's host and OTLP/gRPC port, e.g. http://127.0.0.1:4317"
        )),
    }
}

/// Checks `--otlp-sample-ratio`: a number from 0 to 1.
pub fn parse_ratio(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(r) if (0.0..=1.0).contains(&r) => Ok(r),
        _ => Err(format!("'{s}' is not a share of traces from 0 to 1")),
    }
}

/// The layer that hands node `node`'s exported spans to the collector, and
/// the export to shut down when the node stops.
#[cfg(feature = "otlp")]
pub fn layer<S>(
    node: u64,
    opts: &OtlpOptions,
) -> anyhow::Result<(Box<dyn Layer<S> + Send + Sync>, Export)>
where
    S: Subscriber + for<'a> LookupSpan<'a> + Send + Sync,
{
    use anyhow::Context;
    use opentelemetry::trace::TracerProvider;
    use opentelemetry::KeyValue;
    use opentelemetry_otlp::WithExportConfig;
    use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};

    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(opts.endpoint.clone())
        .with_timeout(std::time::Duration::from_secs(5))
        .build()
        .with_context(|| format!("--otlp-endpoint {}", opts.endpoint))?;
    let resource = opentelemetry_sdk::Resource::builder_empty()
        .with_service_name("bifrost")
        .with_attributes([
            KeyValue::new("service.instance.id", node.to_string()),
            KeyValue::new("service.version", env!("CARGO_PKG_VERSION")),
        ])
        .build();
    let sampler = Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(opts.sample_ratio)));
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_sampler(sampler)
        .with_resource(resource)
        .build();
    let layer = tracing_opentelemetry::layer()
        .with_tracer(provider.tracer("bifrost"))
        .with_threads(false)
        .with_filter(exported());
    Ok((Box::new(layer), Export { provider }))
}

/// Without the `otlp` feature: an error saying so.
#[cfg(not(feature = "otlp"))]
pub fn layer<S>(
    _node: u64,
    opts: &OtlpOptions,
) -> anyhow::Result<(Box<dyn Layer<S> + Send + Sync>, Export)>
where
    S: Subscriber + for<'a> LookupSpan<'a> + Send + Sync,
{
    anyhow::bail!(
        "--otlp-endpoint {}: this bifrost was built without the `otlp` feature",
        opts.endpoint
    )
}

/// The exported spans, and the events of this project's crates at info and
/// above (they become events of the span they happen in).
#[cfg(feature = "otlp")]
fn exported<S>() -> impl tracing_subscriber::layer::Filter<S> {
    tracing_subscriber::filter::filter_fn(|meta| {
        let ours = meta.target().starts_with("bifrost_");
        if meta.is_span() {
            ours && EXPORTED_SPANS.contains(&meta.name())
        } else {
            ours && *meta.level() <= tracing::Level::INFO
        }
    })
    // Debug and trace call sites stay off (and cheap) for this layer.
    .with_max_level_hint(tracing::Level::INFO)
}

impl Export {
    /// Sends the spans still queued (waiting up to the exporter's timeout)
    /// and stops the export.
    pub fn shutdown(self) {
        #[cfg(feature = "otlp")]
        if let Err(e) = self.provider.shutdown() {
            eprintln!("OTLP export: spans still queued at shutdown may be lost: {e}");
        }
    }
}
