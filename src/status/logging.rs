//! Logging set-up with `tracing-subscriber`.
//!
//! - Format: human-readable (ANSI colour only on a terminal) unless `--log-format json`,
//!   which prints one JSON object per line with the current span and the span list, so the
//!   per-peer (`peer = …`) and per-check (`service = …, check = …`) spans the daemon opens
//!   appear as fields.
//! - Level: `--log-level` (a level such as `debug` or a full `EnvFilter` directive such as
//!   `info,anyguard::session=trace`), else `RUST_LOG`, else `info`.
//! - Output goes to stderr. Under systemd (`JOURNAL_STREAM` set) the human format omits the
//!   timestamp, which journald adds itself.

use std::io::IsTerminal;
use std::str::FromStr;

use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

/// `--log-format`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// Human, coloured when stderr is a terminal.
    #[default]
    Auto,
    /// Human, never coloured.
    Human,
    /// One JSON object per line.
    Json,
}

impl FromStr for LogFormat {
    type Err = LoggingError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "auto" => Ok(Self::Auto),
            "human" | "text" => Ok(Self::Human),
            "json" => Ok(Self::Json),
            _ => Err(LoggingError::Format(s.to_owned())),
        }
    }
}

/// Logging could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum LoggingError {
    /// Unknown `--log-format`.
    #[error("unknown log format {0:?} (expected auto, human or json)")]
    Format(String),
    /// Bad `--log-level` or `RUST_LOG`.
    #[error("bad log filter {filter:?}: {message}")]
    Filter {
        /// The directive.
        filter: String,
        /// Parser message.
        message: String,
    },
    /// A global subscriber was already installed.
    #[error("a global tracing subscriber is already set")]
    AlreadySet,
}

/// The filter from `--log-level`, else `RUST_LOG`, else `info`.
pub fn filter(level: Option<&str>) -> Result<EnvFilter, LoggingError> {
    let directive = match level {
        Some(level) => level.to_owned(),
        None => std::env::var(EnvFilter::DEFAULT_ENV)
            .ok()
            .filter(|v| !v.trim().is_empty())
            .unwrap_or_else(|| "info".to_owned()),
    };
    EnvFilter::builder()
        .parse(&directive)
        .map_err(|e| LoggingError::Filter {
            filter: directive,
            message: e.to_string(),
        })
}

/// Installs the global subscriber on stderr. Call once, early in `main`.
pub fn init(format: LogFormat, level: Option<&str>) -> Result<(), LoggingError> {
    let terminal = std::io::stderr().is_terminal();
    let journald = std::env::var_os("JOURNAL_STREAM").is_some();
    let subscriber = build(format, filter(level)?, terminal, journald, std::io::stderr);
    tracing::subscriber::set_global_default(subscriber).map_err(|_| LoggingError::AlreadySet)
}

/// The subscriber [`init`] installs, writing to `writer`; `terminal` enables colour in the
/// human formats and `journald` drops their timestamps.
pub fn build<W>(
    format: LogFormat,
    filter: EnvFilter,
    terminal: bool,
    journald: bool,
    writer: W,
) -> Box<dyn tracing::Subscriber + Send + Sync>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let base = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    match format {
        LogFormat::Json => Box::new(
            base.json()
                .with_current_span(true)
                .with_span_list(true)
                .flatten_event(false)
                .finish(),
        ),
        LogFormat::Auto | LogFormat::Human => {
            let ansi = format == LogFormat::Auto && terminal;
            let base = base.with_ansi(ansi);
            if journald {
                Box::new(base.without_time().finish())
            } else {
                Box::new(base.finish())
            }
        }
    }
}

/// The span every log line about one BGP peer runs in (`peer = name, address = addr`), so
/// the JSON format carries them as fields and filters can select one peer.
pub fn peer_span(peer: &str, address: &str) -> tracing::Span {
    tracing::info_span!("peer", peer = %peer, address = %address)
}

/// The span every log line about one health check runs in (`service = …, check = …`).
pub fn check_span(service: &str, check: &str) -> tracing::Span {
    tracing::info_span!("check", service = %service, check = %check)
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use super::*;

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);

    impl Write for Buf {
        fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(data);
            Ok(data.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'w> MakeWriter<'w> for Buf {
        type Writer = Buf;
        fn make_writer(&'w self) -> Self::Writer {
            self.clone()
        }
    }

    impl Buf {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
        }
    }

    #[test]
    fn formats_parse_case_insensitively() {
        assert_eq!("JSON".parse::<LogFormat>().unwrap(), LogFormat::Json);
        assert_eq!("human".parse::<LogFormat>().unwrap(), LogFormat::Human);
        assert_eq!("auto".parse::<LogFormat>().unwrap(), LogFormat::Auto);
        assert!("xml".parse::<LogFormat>().is_err());
    }

    #[test]
    fn bad_level_is_an_error_naming_the_filter() {
        let err = filter(Some("info,foo=bogus")).unwrap_err();
        assert!(err.to_string().contains("foo=bogus"), "{err}");
        assert!(filter(Some("debug")).is_ok());
        assert!(filter(Some("info,anyguard::session=trace")).is_ok());
    }

    #[test]
    fn json_lines_carry_peer_and_check_spans() {
        let buf = Buf::default();
        let sub = build(
            LogFormat::Json,
            filter(Some("info")).unwrap(),
            false,
            false,
            buf.clone(),
        );
        tracing::subscriber::with_default(sub, || {
            let span = peer_span("edge1", "198.18.0.1");
            let _g = span.enter();
            tracing::info!(from = "openconfirm", to = "established", "state change");
            tracing::debug!("filtered out");
        });
        let text = buf.text();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 1, "{text}");
        let v: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
        assert_eq!(v["level"], "INFO");
        assert_eq!(v["fields"]["message"], "state change");
        assert_eq!(v["fields"]["to"], "established");
        assert_eq!(v["span"]["peer"], "edge1");
        assert_eq!(v["span"]["address"], "198.18.0.1");
        assert_eq!(v["spans"][0]["name"], "peer");
    }

    #[test]
    fn human_format_has_no_colour_off_terminal_and_no_time_under_journald() {
        let buf = Buf::default();
        let sub = build(
            LogFormat::Auto,
            filter(Some("info")).unwrap(),
            false,
            true,
            buf.clone(),
        );
        tracing::subscriber::with_default(sub, || {
            let span = check_span("dns", "tcp#0");
            let _g = span.enter();
            tracing::info!("check went down");
        });
        let text = buf.text();
        assert!(!text.contains('\u{1b}'), "{text:?}");
        assert!(
            text.starts_with(" INFO check{service=dns check=tcp#0}"),
            "{text:?}"
        );
        assert!(text.contains("check went down"));
    }
}
