//! A sixth provider, made up here and nowhere else: carrier pigeons. It implements
//! tinbao's `Provider` trait and nothing more, records every attempt (when, to whom, what,
//! under which idempotency key), and answers each recipient's attempts from a script
//! (`Transient`, `RetryAfter`, `OptedOut`…) before accepting.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tinbao::channels::{Outgoing, Provider, SendOutcome, Transport};
use tokio::time::Instant;

/// The pigeons' transport: a name, nothing else.
pub const PIGEON: Transport = Transport::new("pigeon");

/// One attempt the pigeons saw.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub at: Instant,
    pub to: String,
    pub text: String,
    pub key: Option<String>,
    pub accepted: bool,
}

/// The fake provider. Cheap to clone; clones share what they saw.
#[derive(Clone)]
pub struct Pigeon {
    inner: Arc<Inner>,
}

struct Inner {
    rate: u32,
    script: Mutex<HashMap<String, VecDeque<SendOutcome>>>,
    attempts: Mutex<Vec<Attempt>>,
}

impl Pigeon {
    /// Pigeons that fly at most `rate_per_second` messages a second.
    pub fn new(rate_per_second: u32) -> Pigeon {
        Pigeon {
            inner: Arc::new(Inner {
                rate: rate_per_second,
                script: Mutex::new(HashMap::new()),
                attempts: Mutex::new(Vec::new()),
            }),
        }
    }

    /// The answers to `to`'s next attempts, in order; after them, attempts are accepted.
    pub fn script(&self, to: &str, outcomes: Vec<SendOutcome>) {
        self.inner
            .script
            .lock()
            .unwrap()
            .insert(to.to_owned(), outcomes.into());
    }

    /// Every attempt so far, in order.
    pub fn attempts(&self) -> Vec<Attempt> {
        self.inner.attempts.lock().unwrap().clone()
    }

    /// The attempts to one recipient.
    pub fn attempts_to(&self, to: &str) -> Vec<Attempt> {
        self.attempts().into_iter().filter(|a| a.to == to).collect()
    }

    /// The messages accepted: (to, text).
    pub fn delivered(&self) -> Vec<(String, String)> {
        self.attempts()
            .into_iter()
            .filter(|a| a.accepted)
            .map(|a| (a.to, a.text))
            .collect()
    }

    /// The most attempts that arrived within any one second.
    pub fn busiest_second(&self) -> usize {
        let times: Vec<Instant> = self.attempts().iter().map(|a| a.at).collect();
        (0..times.len())
            .map(|i| {
                times[i..]
                    .iter()
                    .take_while(|t| t.duration_since(times[i]) < Duration::from_secs(1))
                    .count()
            })
            .max()
            .unwrap_or(0)
    }
}

impl Provider for Pigeon {
    fn transport(&self) -> Transport {
        PIGEON
    }

    fn send<'a>(
        &'a self,
        message: &'a Outgoing,
    ) -> futures_util::future::BoxFuture<'a, SendOutcome> {
        let scripted = self
            .inner
            .script
            .lock()
            .unwrap()
            .get_mut(&message.to)
            .and_then(VecDeque::pop_front);
        let mut attempts = self.inner.attempts.lock().unwrap();
        let outcome = scripted.unwrap_or_else(|| SendOutcome::Accepted {
            provider_id: Some(format!("pigeon-{}", attempts.len())),
        });
        attempts.push(Attempt {
            at: Instant::now(),
            to: message.to.clone(),
            text: message.text.clone(),
            key: message.idempotency_key.clone(),
            accepted: matches!(outcome, SendOutcome::Accepted { .. }),
        });
        Box::pin(async move { outcome })
    }

    fn rate_per_second(&self) -> Option<u32> {
        Some(self.inner.rate)
    }
}
