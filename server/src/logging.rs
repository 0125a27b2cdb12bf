//! Log setup: every line carries the node id, so the interleaved logs of a
//! three-node cluster read clearly, even from tasks openraft spawns outside
//! our spans. With `--otlp-endpoint`, spans also go to an OpenTelemetry
//! collector ([`crate::otlp`]).

use std::fmt;

use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::{DefaultFields, Format, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::otlp::{Export, OtlpOptions};

struct WithNode {
    node: String,
    inner: Format,
}

impl<S, N> FormatEvent<S, N> for WithNode
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        write!(writer, "{} ", self.node)?;
        self.inner.format_event(ctx, writer, event)
    }
}

/// Installs the global subscriber. `RUST_LOG` overrides the default filter.
pub fn init(node: Option<u64>) {
    let _ = try_init(node, None);
}

/// [`init`], and for node `node` with `otlp`, the OpenTelemetry export too
/// (to shut down when the node stops). Fails only on a bad OTLP setting.
pub fn init_node(node: u64, otlp: Option<&OtlpOptions>) -> anyhow::Result<Option<Export>> {
    try_init(Some(node), otlp)
}

fn try_init(node: Option<u64>, otlp: Option<&OtlpOptions>) -> anyhow::Result<Option<Export>> {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,openraft=warn,h2=warn,tower=warn,hyper=warn"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let prefix = match node {
        Some(id) => format!("node={id}"),
        None => "bifrost".to_string(),
    };
    let log = tracing_subscriber::fmt::layer()
        .with_ansi(ansi)
        .fmt_fields(DefaultFields::new())
        .event_format(WithNode {
            node: prefix,
            inner: Format::default().with_ansi(ansi),
        })
        .with_writer(std::io::stderr)
        .with_filter(filter);
    let (spans, export) = match (node, otlp) {
        (Some(id), Some(opts)) => {
            let (layer, export) = crate::otlp::layer(id, opts)?;
            (Some(layer), Some(export))
        }
        _ => (None, None),
    };
    // Only the first subscriber of a process counts (tests start several).
    let _ = tracing_subscriber::registry()
        .with(spans)
        .with(log)
        .try_init();
    Ok(export)
}
