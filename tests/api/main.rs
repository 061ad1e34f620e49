//! One integration-test binary: the real router on a random port, real SQLite and
//! PostgreSQL databases, the real binary for process-level checks, headless Chromium.

mod anonymity;
mod browser;
mod browser_flow;
mod helpers;
mod keys;
mod store;
mod tips;
mod web;
