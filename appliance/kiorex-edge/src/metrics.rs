//! Prometheus metrics of the edge: requests by outcome, rejects by reason, connections, and two
//! latency histograms: the whole request, and the part of it spent waiting for core. The
//! difference is the edge's own time, so an operator can tell a slow edge from a slow core
//! (nginx's `$request_time` against `$upstream_response_time`). A handful of fixed counters
//! with labels that cannot carry patient data (no path, no client id), so plain atomics are
//! enough; no registry crate is needed.

use crate::problem::Reject;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

const REASONS: [Reject; 8] = [
    Reject::NotFound,
    Reject::Unauthenticated,
    Reject::InsufficientScope,
    Reject::RateLimited {
        retry_after_secs: 0,
    },
    Reject::BodyTooLarge,
    Reject::BodyTimeout,
    Reject::CoreUnavailable,
    Reject::CoreTimeout,
];

/// Upper bounds of the latency buckets, in seconds. Fine below 1 ms, where the edge's own
/// share of a request lies.
const BUCKETS: [f64; 14] = [
    0.0001, 0.00025, 0.0005, 0.00075, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0,
];

/// A cumulative Prometheus histogram over `BUCKETS`.
#[derive(Default)]
struct Histogram {
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl Histogram {
    fn observe(&self, latency: Duration) {
        let secs = latency.as_secs_f64();
        for (bound, bucket) in BUCKETS.iter().zip(&self.buckets) {
            if secs <= *bound {
                bucket.fetch_add(1, Relaxed);
            }
        }
        self.count.fetch_add(1, Relaxed);
        self.sum_micros
            .fetch_add(latency.as_micros() as u64, Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        for (bound, bucket) in BUCKETS.iter().zip(&self.buckets) {
            let _ = writeln!(
                out,
                "{name}_bucket{{le=\"{bound}\"}} {}",
                bucket.load(Relaxed)
            );
        }
        let count = self.count.load(Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let sum = self.sum_micros.load(Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum {sum}\n{name}_count {count}");
    }
}

#[derive(Default)]
pub struct Metrics {
    forwarded: AtomicU64,
    rejected: [AtomicU64; 8],
    connections_refused: AtomicU64,
    connections_open: AtomicU64,
    handshake_failures: AtomicU64,
    latency: Histogram,
    upstream: Histogram,
}

impl Metrics {
    /// A request core answered: `latency` is the whole request at the edge, `upstream` the part
    /// spent waiting for core's answer.
    pub fn forwarded(&self, latency: Duration, upstream: Duration) {
        self.forwarded.fetch_add(1, Relaxed);
        self.latency.observe(latency);
        self.upstream.observe(upstream);
    }

    pub fn rejected(&self, reason: Reject, latency: Duration) {
        let i = REASONS
            .iter()
            .position(|r| r.reason() == reason.reason())
            .expect("every reason is listed");
        self.rejected[i].fetch_add(1, Relaxed);
        self.latency.observe(latency);
    }

    pub fn connection_refused(&self) {
        self.connections_refused.fetch_add(1, Relaxed);
    }

    pub fn handshake_failed(&self) {
        self.handshake_failures.fetch_add(1, Relaxed);
    }

    pub fn connection_opened(&self) {
        self.connections_open.fetch_add(1, Relaxed);
    }

    pub fn connection_closed(&self) {
        self.connections_open.fetch_sub(1, Relaxed);
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# HELP kiorex_edge_requests_total Requests by outcome.\n# TYPE kiorex_edge_requests_total counter"
        );
        let _ = writeln!(
            out,
            "kiorex_edge_requests_total{{outcome=\"forwarded\"}} {}",
            self.forwarded.load(Relaxed)
        );
        for (reason, count) in REASONS.iter().zip(&self.rejected) {
            let _ = writeln!(
                out,
                "kiorex_edge_requests_total{{outcome=\"rejected\",reason=\"{}\"}} {}",
                reason.reason(),
                count.load(Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "# HELP kiorex_edge_connections_refused_total Connections closed at once because the connection limit was reached.\n# TYPE kiorex_edge_connections_refused_total counter\nkiorex_edge_connections_refused_total {}",
            self.connections_refused.load(Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP kiorex_edge_tls_handshake_failures_total TLS handshakes that failed or timed out.\n# TYPE kiorex_edge_tls_handshake_failures_total counter\nkiorex_edge_tls_handshake_failures_total {}",
            self.handshake_failures.load(Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP kiorex_edge_connections_open Client connections open now.\n# TYPE kiorex_edge_connections_open gauge\nkiorex_edge_connections_open {}",
            self.connections_open.load(Relaxed)
        );
        self.latency.render(
            &mut out,
            "kiorex_edge_request_duration_seconds",
            "Time from request head to response head, at the edge.",
        );
        self.upstream.render(
            &mut out,
            "kiorex_edge_upstream_duration_seconds",
            "Time from sending a forwarded request to core until its answer was read (its head, for answers passed on as they come).",
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(text: &str, series: &str) -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("{series} missing in\n{text}"))
    }

    #[test]
    fn core_time_is_counted_for_forwarded_requests_only() {
        let metrics = Metrics::default();
        metrics.forwarded(Duration::from_micros(3_300), Duration::from_micros(3_000));
        metrics.rejected(Reject::NotFound, Duration::from_micros(200));
        let text = metrics.render();
        let whole = "kiorex_edge_request_duration_seconds";
        let core = "kiorex_edge_upstream_duration_seconds";
        assert_eq!(
            value(&text, &format!("{whole}_bucket{{le=\"0.00025\"}}")),
            1.0
        );
        assert_eq!(
            value(&text, &format!("{whole}_bucket{{le=\"0.005\"}}")),
            2.0
        );
        assert_eq!(value(&text, &format!("{whole}_count")), 2.0);
        assert_eq!(
            value(&text, &format!("{core}_bucket{{le=\"0.0025\"}}")),
            0.0
        );
        assert_eq!(value(&text, &format!("{core}_bucket{{le=\"0.005\"}}")), 1.0);
        assert_eq!(value(&text, &format!("{core}_count")), 1.0);
        assert!((value(&text, &format!("{core}_sum")) - 0.003).abs() < 1e-9);
    }
}
