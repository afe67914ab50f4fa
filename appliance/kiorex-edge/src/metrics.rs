//! Prometheus metrics of the edge: requests by outcome, rejects by reason, connections and a
//! latency histogram. A handful of fixed counters with labels that cannot carry patient data
//! (no path, no client id), so plain atomics are enough; no registry crate is needed.

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

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: [f64; 10] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0];

#[derive(Default)]
pub struct Metrics {
    forwarded: AtomicU64,
    rejected: [AtomicU64; 8],
    connections_refused: AtomicU64,
    connections_open: AtomicU64,
    handshake_failures: AtomicU64,
    latency_buckets: [AtomicU64; 10],
    latency_count: AtomicU64,
    latency_sum_micros: AtomicU64,
}

impl Metrics {
    pub fn forwarded(&self, latency: Duration) {
        self.forwarded.fetch_add(1, Relaxed);
        self.observe(latency);
    }

    pub fn rejected(&self, reason: Reject, latency: Duration) {
        let i = REASONS
            .iter()
            .position(|r| r.reason() == reason.reason())
            .expect("every reason is listed");
        self.rejected[i].fetch_add(1, Relaxed);
        self.observe(latency);
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

    fn observe(&self, latency: Duration) {
        let secs = latency.as_secs_f64();
        for (i, bound) in BUCKETS.iter().enumerate() {
            if secs <= *bound {
                self.latency_buckets[i].fetch_add(1, Relaxed);
            }
        }
        self.latency_count.fetch_add(1, Relaxed);
        self.latency_sum_micros
            .fetch_add(latency.as_micros() as u64, Relaxed);
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
        let _ = writeln!(
            out,
            "# HELP kiorex_edge_request_duration_seconds Time from request head to response head.\n# TYPE kiorex_edge_request_duration_seconds histogram"
        );
        for (bound, count) in BUCKETS.iter().zip(&self.latency_buckets) {
            let _ = writeln!(
                out,
                "kiorex_edge_request_duration_seconds_bucket{{le=\"{bound}\"}} {}",
                count.load(Relaxed)
            );
        }
        let count = self.latency_count.load(Relaxed);
        let _ = writeln!(
            out,
            "kiorex_edge_request_duration_seconds_bucket{{le=\"+Inf\"}} {count}"
        );
        let _ = writeln!(
            out,
            "kiorex_edge_request_duration_seconds_sum {}",
            self.latency_sum_micros.load(Relaxed) as f64 / 1e6
        );
        let _ = writeln!(out, "kiorex_edge_request_duration_seconds_count {count}");
        out
    }
}
