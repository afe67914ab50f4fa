//! Logging: `tracing` everywhere in the code. Under systemd (JOURNAL_STREAM set) events go to
//! journald through systemd-journal-logger with their fields as journal fields (REQUEST_ID,
//! ACTOR …); otherwise structured JSON lines on stdout. Patient data never goes into logs.

use crate::config::LogFormat;
use std::fmt::Write as _;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;

pub fn init(format: LogFormat, level: &str) {
    let filter = EnvFilter::try_from_env("KIOREX_LOG").unwrap_or_else(|_| {
        EnvFilter::new(
            if std::env::var_os("JOURNAL_STREAM").is_some() || format == LogFormat::Journal {
                format!("{level},tower_http=warn,diesel=warn")
            } else {
                format!("{level},tower_http=warn,diesel=warn,kiorex::audit=warn")
            },
        )
    });
    let journal = match format {
        LogFormat::Journal => true,
        LogFormat::Auto => std::env::var_os("JOURNAL_STREAM").is_some(),
        _ => false,
    };
    if journal && let Ok(logger) = systemd_journal_logger::JournalLog::new() {
        let logger = logger.with_syslog_identifier("kiorex".into());
        if log::set_boxed_logger(Box::new(logger)).is_ok() {
            log::set_max_level(log::LevelFilter::Trace);
            let _ = tracing_subscriber::registry()
                .with(filter)
                .with(JournalLayer)
                .try_init();
            return;
        }
    }
    let registry = tracing_subscriber::registry().with(filter);
    let _ = match format {
        LogFormat::Text => registry
            .with(tracing_subscriber::fmt::layer().with_target(true))
            .try_init(),
        _ => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(false),
            )
            .try_init(),
    };
}

/// Forwards tracing events to the `log` logger (the journal), fields as key-values.
struct JournalLayer;

impl<S: Subscriber> tracing_subscriber::Layer<S> for JournalLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let meta = event.metadata();
        let level = match *meta.level() {
            Level::ERROR => log::Level::Error,
            Level::WARN => log::Level::Warn,
            Level::INFO => log::Level::Info,
            Level::DEBUG => log::Level::Debug,
            Level::TRACE => log::Level::Trace,
        };
        let kvs: Vec<(&str, &str)> = fields
            .pairs
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        log::logger().log(
            &log::Record::builder()
                .level(level)
                .target(meta.target())
                .args(format_args!("{}", fields.message))
                .key_values(&kvs)
                .build(),
        );
    }
}

#[derive(Default)]
struct Fields {
    message: String,
    pairs: Vec<(String, String)>,
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            self.pairs
                .push((field.name().to_ascii_uppercase(), format!("{value:?}")));
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            self.pairs
                .push((field.name().to_ascii_uppercase(), value.to_owned()));
        }
    }
}
