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

/// Which action is being limited. Every door that checks a receipt, logs in, or sends an
/// email or message on a stranger's behalf counts against one of these.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Submitting a tip or a reply.
    Submit,
    /// Checking a receipt (`/status`, `/status/reply`, the API, `KT`/`TL` over chat and SMS).
    Check,
    /// A console login step: the password or the second factor.
    Login,
    /// Asking the server to write to an address someone typed (a subscription's
    /// confirmation email).
    Send,
    /// Looking up the form's helpers (a commune's village names).
    Lookup,
}

/// The in-memory limiters.
pub struct Limits {
    enabled: bool,
    day_key: RwLock<(i64, EphemeralHasher)>,
    submit: Keyed,
    check: Keyed,
    login: Keyed,
    send: Keyed,
    lookup: Keyed,
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
            login: RateLimiter::keyed(quota(cfg.login_per_hour, cfg.login_burst)),
            send: RateLimiter::keyed(quota(cfg.send_per_hour, cfg.send_burst)),
            lookup: RateLimiter::keyed(quota(cfg.lookup_per_hour, cfg.lookup_burst)),
        }
    }

    /// The day's keyed hash of `value` (a client address or a sender pseudonym).
    fn day_hash(&self, value: &[u8]) -> [u8; 16] {
        let day = today();
        {
            let guard = self.day_key.read().unwrap_or_else(|e| e.into_inner());
            if guard.0 == day {
                return guard.1.hash(value);
            }
        }
        let mut guard = self.day_key.write().unwrap_or_else(|e| e.into_inner());
        if guard.0 != day {
            // A new day: yesterday's key is dropped and never written anywhere.
            *guard = (day, EphemeralHasher::new());
        }
        guard.1.hash(value)
    }

    fn limiter(&self, action: Action) -> &Keyed {
        match action {
            Action::Submit => &self.submit,
            Action::Check => &self.check,
            Action::Login => &self.login,
            Action::Send => &self.send,
            Action::Lookup => &self.lookup,
        }
    }

    fn count(&self, action: Action, key: [u8; 16]) -> Result<(), Limited> {
        if !self.enabled {
            return Ok(());
        }
        self.limiter(action)
            .check_key(&key)
            .map_err(|not_until| Limited {
                retry_after: not_until.wait_time_from(DefaultClock::default().now()),
            })
    }

    /// Counts one attempt of `action` by the client at `addr`.
    pub fn check(&self, action: Action, addr: IpAddr) -> Result<(), Limited> {
        if !self.enabled {
            return Ok(());
        }
        let key = self.day_hash(addr.to_string().as_bytes());
        self.count(action, key)
    }

    /// Counts one attempt of `action` by a chat or SMS sender, known only by its
    /// pseudonym (hashed again under the day's key, like an address).
    pub fn check_sender(&self, action: Action, pseudonym: &[u8]) -> Result<(), Limited> {
        if !self.enabled {
            return Ok(());
        }
        // A prefix keeps a sender's key apart from any address's.
        let mut value = b"sender:".to_vec();
        value.extend_from_slice(pseudonym);
        let key = self.day_hash(&value);
        self.count(action, key)
    }

    /// Forgets clients whose limits have fully recovered (keeps memory bounded).
    pub fn shrink(&self) {
        for limiter in [
            &self.submit,
            &self.check,
            &self.login,
            &self.send,
            &self.lookup,
        ] {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    }
}

/// Receipt checks over chat and SMS, limited per sender like the web's per address.
impl crate::dialog::SenderLimit for Limits {
    fn check_receipt(&self, sender: &[u8]) -> Result<(), u64> {
        self.check_sender(Action::Check, sender)
            .map_err(|l| l.minutes())
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
            ..RateLimitConfig::default()
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

    #[test]
    fn senders_are_limited_apart_from_addresses() {
        let limits = Limits::new(&RateLimitConfig {
            enabled: true,
            check_per_hour: 60,
            check_burst: 2,
            ..RateLimitConfig::default()
        });
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        assert!(limits.check_sender(Action::Check, b"p1").is_ok());
        assert!(limits.check_sender(Action::Check, b"p1").is_ok());
        let limited = limits.check_sender(Action::Check, b"p1").unwrap_err();
        assert!(limited.minutes() >= 1);
        assert!(limits.check_sender(Action::Check, b"p2").is_ok());
        assert!(limits.check(Action::Check, a).is_ok());
    }

    #[test]
    fn every_action_has_its_own_counter() {
        let limits = Limits::new(&RateLimitConfig {
            enabled: true,
            login_per_hour: 10,
            login_burst: 1,
            send_per_hour: 10,
            send_burst: 1,
            ..RateLimitConfig::default()
        });
        let a: IpAddr = "192.0.2.9".parse().unwrap();
        assert!(limits.check(Action::Login, a).is_ok());
        assert!(limits.check(Action::Login, a).is_err());
        assert!(limits.check(Action::Send, a).is_ok());
        assert!(limits.check(Action::Send, a).is_err());
        assert!(limits.check(Action::Submit, a).is_ok());
        let limits = Limits::new(&RateLimitConfig {
            enabled: true,
            lookup_per_hour: 10,
            lookup_burst: 1,
            ..RateLimitConfig::default()
        });
        assert!(limits.check(Action::Lookup, a).is_ok());
        assert!(limits.check(Action::Lookup, a).is_err());
        assert!(limits.check(Action::Submit, a).is_ok());
    }
}
