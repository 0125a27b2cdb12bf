//! Log setup: every line carries the node id, so the interleaved logs of a
//! three-node cluster read clearly, even from tasks openraft spawns outside
//! our spans.

use std::fmt;

use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::{DefaultFields, Format, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::EnvFilter;

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
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,openraft=warn,h2=warn,tower=warn,hyper=warn"));
    let node = match node {
        Some(id) => format!("node={id}"),
        None => "bifrost".to_string(),
    };
    let _ = tracing_subscriber::fmt()
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(filter)
        .fmt_fields(DefaultFields::new())
        .event_format(WithNode {
            node,
            inner: Format::default()
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())),
        })
        .with_writer(std::io::stderr)
        .try_init();
}
