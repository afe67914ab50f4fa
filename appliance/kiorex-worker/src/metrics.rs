//! The worker's Prometheus metrics: events delivered and failed (counters of this process) and
//! the outbox lag (read from PostgreSQL when scraped). No labels that could carry patient data.

use crate::outbox::Lag;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

#[derive(Default)]
pub struct Metrics {
    delivered: AtomicU64,
    failed: AtomicU64,
    batches: AtomicU64,
}

impl Metrics {
    pub fn batch(&self, delivered: usize, failed: usize) {
        self.batches.fetch_add(1, Relaxed);
        self.delivered.fetch_add(delivered as u64, Relaxed);
        self.failed.fetch_add(failed as u64, Relaxed);
    }

    pub fn delivered(&self) -> u64 {
        self.delivered.load(Relaxed)
    }

    pub fn failed(&self) -> u64 {
        self.failed.load(Relaxed)
    }

    /// The text exposition format; `lag` is `None` when PostgreSQL did not answer.
    pub fn render(&self, lag: Option<Lag>) -> String {
        let mut out = String::new();
        let mut metric = |name: &str, kind: &str, help: &str, value: String| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
            );
        };
        metric(
            "kiorex_worker_events_delivered_total",
            "counter",
            "Outbox events delivered by this process.",
            self.delivered().to_string(),
        );
        metric(
            "kiorex_worker_events_failed_total",
            "counter",
            "Delivery attempts that failed (the event is retried after a back-off).",
            self.failed().to_string(),
        );
        metric(
            "kiorex_worker_batches_total",
            "counter",
            "Batches claimed by this process.",
            self.batches.load(Relaxed).to_string(),
        );
        if let Some(lag) = lag {
            metric(
                "kiorex_outbox_pending",
                "gauge",
                "Undelivered outbox events.",
                lag.pending.to_string(),
            );
            metric(
                "kiorex_outbox_failing",
                "gauge",
                "Undelivered events whose last attempt failed.",
                lag.failing.to_string(),
            );
            metric(
                "kiorex_outbox_lag_seconds",
                "gauge",
                "Age of the oldest undelivered event (0 when none).",
                format!("{:.3}", lag.oldest_seconds),
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_and_lag_are_exposed() {
        let metrics = Metrics::default();
        metrics.batch(3, 1);
        let text = metrics.render(Some(Lag {
            pending: 7,
            oldest_seconds: 1.5,
            failing: 1,
        }));
        assert!(text.contains("kiorex_worker_events_delivered_total 3\n"));
        assert!(text.contains("kiorex_worker_events_failed_total 1\n"));
        assert!(text.contains("kiorex_outbox_pending 7\n"));
        assert!(text.contains("kiorex_outbox_lag_seconds 1.500\n"));
        assert!(!metrics.render(None).contains("kiorex_outbox_pending"));
    }
}
