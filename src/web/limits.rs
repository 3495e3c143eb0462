//! The rate limit on sign-ups per client address.
//!
//! It lives in memory, per web server: a restart forgets it, and behind a load balancer
//! each replica counts its own share. That is enough for what it is for — slowing one
//! client down — and it costs no write per request. The limit that protects a third
//! party's mailbox, confirmation messages per subscriber address per day, is counted in
//! the store instead (`Store::web_signup_at_most`), so it holds across replicas and
//! restarts.

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

/// How many sign-ups are allowed, from settings.
#[derive(Debug, Clone, Copy)]
pub struct SignupQuota {
    /// Sign-up POSTs per client IP per hour.
    pub per_ip_per_hour: u32,
}

/// The sign-up limiters, shared by all requests.
#[derive(Clone)]
pub struct SignupLimits {
    per_ip: Arc<DefaultKeyedRateLimiter<IpAddr>>,
}

impl std::fmt::Debug for SignupLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SignupLimits")
    }
}

fn quota(count: u32, per: Duration) -> Quota {
    let count = NonZeroU32::new(count.max(1)).expect("at least one");
    Quota::with_period(per / count.get())
        .expect("a non-zero period")
        .allow_burst(count)
}

impl SignupLimits {
    /// Limiters for `quota`.
    pub fn new(quota_: SignupQuota) -> Self {
        Self {
            per_ip: Arc::new(RateLimiter::keyed(quota(
                quota_.per_ip_per_hour,
                Duration::from_secs(3600),
            ))),
        }
    }

    /// Takes one sign-up from `ip`'s allowance; false when it is used up.
    pub fn allow_ip(&self, ip: IpAddr) -> bool {
        // IPv6 clients usually hold a whole /64: count them per /64.
        let key = match ip {
            IpAddr::V6(v6) if v6.to_ipv4_mapped().is_none() => {
                let mut seg = v6.segments();
                seg[4..].fill(0);
                IpAddr::V6(seg.into())
            }
            IpAddr::V6(v6) => IpAddr::V4(v6.to_ipv4_mapped().expect("checked")),
            v4 => v4,
        };
        self.per_ip.check_key(&key).is_ok()
    }

    /// Forgets keys whose allowance is full again, so the maps stay small.
    pub fn tidy(&self) {
        self.per_ip.retain_recent();
        self.per_ip.shrink_to_fit();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_each_key_separately() {
        let limits = SignupLimits::new(SignupQuota { per_ip_per_hour: 2 });
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        assert!(limits.allow_ip(a));
        assert!(limits.allow_ip(a));
        assert!(!limits.allow_ip(a));
        assert!(limits.allow_ip(b));
    }

    #[test]
    fn counts_ipv6_per_64() {
        let limits = SignupLimits::new(SignupQuota { per_ip_per_hour: 1 });
        assert!(limits.allow_ip("2001:db8::1".parse().unwrap()));
        assert!(!limits.allow_ip("2001:db8::2".parse().unwrap()));
        assert!(limits.allow_ip("2001:db8:0:1::1".parse().unwrap()));
    }
}
