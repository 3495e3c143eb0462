//! Rate limits on sign-ups: per client address and per subscriber address.
//!
//! Both live in memory (a restart forgets them, which is harmless at these rates). The
//! per-IP limit answers 429; the per-address limit is silent — the form says "check your
//! inbox" either way — so that it cannot be used to learn whether an address is known.

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
    /// Confirmation messages per subscriber address per day.
    pub per_address_per_day: u32,
}

/// The sign-up limiters, shared by all requests.
#[derive(Clone)]
pub struct SignupLimits {
    per_ip: Arc<DefaultKeyedRateLimiter<IpAddr>>,
    per_address: Arc<DefaultKeyedRateLimiter<String>>,
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
            per_address: Arc::new(RateLimiter::keyed(quota(
                quota_.per_address_per_day,
                Duration::from_secs(24 * 3600),
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

    /// Takes one confirmation message from `address`'s allowance (the normalised,
    /// lower-cased address); false when it is used up.
    pub fn allow_address(&self, address: &str) -> bool {
        self.per_address
            .check_key(&address.to_ascii_lowercase())
            .is_ok()
    }

    /// Forgets keys whose allowance is full again, so the maps stay small.
    pub fn tidy(&self) {
        self.per_ip.retain_recent();
        self.per_address.retain_recent();
        self.per_ip.shrink_to_fit();
        self.per_address.shrink_to_fit();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_each_key_separately() {
        let limits = SignupLimits::new(SignupQuota {
            per_ip_per_hour: 2,
            per_address_per_day: 1,
        });
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        assert!(limits.allow_ip(a));
        assert!(limits.allow_ip(a));
        assert!(!limits.allow_ip(a));
        assert!(limits.allow_ip(b));
        assert!(limits.allow_address("x@example.org"));
        assert!(!limits.allow_address("X@Example.org"));
        assert!(limits.allow_address("y@example.org"));
    }

    #[test]
    fn counts_ipv6_per_64() {
        let limits = SignupLimits::new(SignupQuota {
            per_ip_per_hour: 1,
            per_address_per_day: 1,
        });
        assert!(limits.allow_ip("2001:db8::1".parse().unwrap()));
        assert!(!limits.allow_ip("2001:db8::2".parse().unwrap()));
        assert!(limits.allow_ip("2001:db8:0:1::1".parse().unwrap()));
    }
}
