//! Rate limits per source address and per partner client (GCRA through `governor`), with the
//! exact wait for `Retry-After`.

use crate::settings::Limits;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

pub struct RateLimits {
    per_ip: DefaultKeyedRateLimiter<IpAddr>,
    per_client: DefaultKeyedRateLimiter<String>,
}

fn quota(per_second: u32, burst: u32) -> Quota {
    let rate = NonZeroU32::new(per_second.max(1)).expect("at least 1");
    let burst = NonZeroU32::new(burst.max(1)).expect("at least 1");
    Quota::per_second(rate).allow_burst(burst)
}

/// Seconds to announce in `Retry-After`: the wait, rounded up, at least 1.
fn retry_after(wait: Duration) -> u64 {
    wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
}

impl RateLimits {
    pub fn new(limits: &Limits) -> Arc<RateLimits> {
        Arc::new(RateLimits {
            per_ip: RateLimiter::keyed(quota(limits.per_ip_per_second, limits.per_ip_burst)),
            per_client: RateLimiter::keyed(quota(
                limits.per_client_per_second,
                limits.per_client_burst,
            )),
        })
    }

    /// Ok, or the seconds to wait.
    pub fn check_ip(&self, ip: IpAddr) -> Result<(), u64> {
        self.per_ip
            .check_key(&ip)
            .map_err(|n| retry_after(n.wait_time_from(DefaultClock::default().now())))
    }

    /// Ok, or the seconds to wait.
    pub fn check_client(&self, client_id: &str) -> Result<(), u64> {
        self.per_client
            .check_key(&client_id.to_owned())
            .map_err(|n| retry_after(n.wait_time_from(DefaultClock::default().now())))
    }

    /// Forgets addresses and clients whose buckets are full again, so that a scan from many
    /// addresses does not grow memory for ever.
    pub fn forget_idle(self: &Arc<Self>, every: Duration) {
        let this = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                let Some(this) = this.upgrade() else { return };
                this.per_ip.retain_recent();
                this.per_ip.shrink_to_fit();
                this.per_client.retain_recent();
                this.per_client.shrink_to_fit();
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_is_allowed_then_refused_with_a_wait() {
        let limits = RateLimits::new(&Limits {
            per_ip_per_second: 1,
            per_ip_burst: 3,
            ..Limits::default()
        });
        let ip: IpAddr = [192, 0, 2, 1].into();
        for _ in 0..3 {
            assert!(limits.check_ip(ip).is_ok());
        }
        assert_eq!(limits.check_ip(ip), Err(1));
        assert!(
            limits.check_ip([192, 0, 2, 2].into()).is_ok(),
            "another address has its own bucket"
        );
    }

    #[test]
    fn retry_after_rounds_up() {
        assert_eq!(retry_after(Duration::from_millis(10)), 1);
        assert_eq!(retry_after(Duration::from_secs(2)), 2);
        assert_eq!(retry_after(Duration::from_millis(2001)), 3);
    }
}
