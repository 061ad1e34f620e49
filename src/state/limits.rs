//! Abuse limits that identify no one: the client address is hashed under a key that lives
//! only in memory and changes every day, and the counters live only in memory.

use crate::config::RateLimitConfig;
use crate::crypto::EphemeralHasher;
use governor::clock::{Clock, DefaultClock};
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::RwLock;
use std::time::Duration;

type Keyed = RateLimiter<[u8; 16], DefaultKeyedStateStore<[u8; 16]>, DefaultClock>;

/// What a limited client must wait.
#[derive(Debug, Clone, Copy)]
pub struct Limited {
    pub retry_after: Duration,
}

impl Limited {
    /// Whole minutes to wait, at least one (for the message).
    pub fn minutes(&self) -> u64 {
        self.retry_after.as_secs().div_ceil(60).max(1)
    }
}

/// Which action is being limited.
#[derive(Debug, Clone, Copy)]
pub enum Action {
    /// Submitting a tip or a reply.
    Submit,
    /// Checking a receipt.
    Check,
}

/// The in-memory limiters.
pub struct Limits {
    enabled: bool,
    day_key: RwLock<(i64, EphemeralHasher)>,
    submit: Keyed,
    check: Keyed,
}

fn quota(per_hour: u32, burst: u32) -> Quota {
    let per_hour = NonZeroU32::new(per_hour.max(1)).expect("non-zero");
    let burst = NonZeroU32::new(burst.max(1)).expect("non-zero");
    Quota::per_hour(per_hour).allow_burst(burst)
}

fn today() -> i64 {
    chrono::Utc::now().timestamp() / 86_400
}

impl Limits {
    /// Limiters as configured.
    pub fn new(cfg: &RateLimitConfig) -> Limits {
        Limits {
            enabled: cfg.enabled,
            day_key: RwLock::new((today(), EphemeralHasher::new())),
            submit: RateLimiter::keyed(quota(cfg.submit_per_hour, cfg.submit_burst)),
            check: RateLimiter::keyed(quota(cfg.check_per_hour, cfg.check_burst)),
        }
    }

    fn client_key(&self, addr: IpAddr) -> [u8; 16] {
        let day = today();
        {
            let guard = self.day_key.read().expect("lock");
            if guard.0 == day {
                return guard.1.hash(addr.to_string().as_bytes());
            }
        }
        let mut guard = self.day_key.write().expect("lock");
        if guard.0 != day {
            // A new day: yesterday's key is dropped and never written anywhere.
            *guard = (day, EphemeralHasher::new());
        }
        guard.1.hash(addr.to_string().as_bytes())
    }

    /// Counts one attempt of `action` by the client at `addr`.
    pub fn check(&self, action: Action, addr: IpAddr) -> Result<(), Limited> {
        if !self.enabled {
            return Ok(());
        }
        let key = self.client_key(addr);
        let limiter = match action {
            Action::Submit => &self.submit,
            Action::Check => &self.check,
        };
        limiter.check_key(&key).map_err(|not_until| Limited {
            retry_after: not_until.wait_time_from(DefaultClock::default().now()),
        })
    }

    /// Forgets clients whose limits have fully recovered (keeps memory bounded).
    pub fn shrink(&self) {
        self.submit.retain_recent();
        self.check.retain_recent();
        self.submit.shrink_to_fit();
        self.check.shrink_to_fit();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_limited_per_client() {
        let limits = Limits::new(&RateLimitConfig {
            enabled: true,
            submit_per_hour: 2,
            submit_burst: 2,
            check_per_hour: 60,
            check_burst: 1,
        });
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        assert!(limits.check(Action::Submit, a).is_ok());
        assert!(limits.check(Action::Submit, a).is_ok());
        let limited = limits.check(Action::Submit, a).unwrap_err();
        assert!(limited.minutes() >= 1);
        assert!(limits.check(Action::Submit, b).is_ok());
        assert!(limits.check(Action::Check, a).is_ok());
        assert!(limits.check(Action::Check, a).is_err());
    }
}
