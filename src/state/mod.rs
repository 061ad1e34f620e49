//! What a request handler may reach: the store, the services, the limits and caches of
//! this process. `app` builds it; the web and console edges read it.

mod caches;
mod limits;
pub mod once;
mod request;

pub use caches::{ConsoleCaches, TtlCache};
pub use limits::{Action, Limited, Limits};
pub use request::{came_over_https, pad_to, ClientIp, Lang};

use crate::accounts::Logins;
use crate::audit::AuditLog;
use crate::broadcast::Broadcasts;
use crate::config::Config;
use crate::dialog::Chat;
use crate::intake::Intake;
use crate::store::Store;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::sync::{Arc, OnceLock};

/// What every handler can reach: one pointer to the process's [`Shared`] state, so that
/// the clone each extractor and middleware takes is one reference count, not one per
/// field (the field-by-field clone and drop were 5 % of a tip's CPU time, issue 15).
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl AppState {
    /// The state of a process, to share between its requests.
    pub fn new(shared: Shared) -> AppState {
        AppState(Arc::new(shared))
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// The services, limits and caches behind [`AppState`].
pub struct Shared {
    pub config: Arc<Config>,
    /// The repository (the same one the services use).
    pub store: Store,
    /// Tips from every channel: submitting, reading, replying.
    pub intake: Intake,
    /// The audit log's group-commit writer: every request path appends through it.
    pub audit: AuditLog,
    pub limits: Arc<Limits>,
    pub metrics: PrometheusHandle,
    /// Costly console counts, briefly cached.
    pub console_cache: Arc<ConsoleCaches>,
    /// Chat and SMS conversations (webhooks hand their events here).
    pub chat: Chat,
    /// Campaign broadcasts and their subscribers.
    pub broadcasts: Broadcasts,
    /// The keyed parts of console logins (throttling keys, TOTP secrets).
    pub logins: Logins,
    /// The resident forms' submission tokens: one submission, one record.
    pub submissions: Arc<once::Submissions>,
    /// Each commune's village names, as the form suggests them (a minute old at most).
    pub villages: Arc<TtlCache<Arc<Vec<String>>>>,
    /// Places for forms with photos being read and handled (`photo_uploads`).
    pub uploads: tokio::sync::Semaphore,
}

/// The process-wide Prometheus recorder (installed once, shared by every app in a process).
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Full("tinbao_http_request_duration_seconds".into()),
                    &[
                        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                    ],
                )
                .expect("valid buckets")
                .install_recorder()
                .expect("one metrics recorder per process")
        })
        .clone()
}
