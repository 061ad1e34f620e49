//! One integration-test binary: the real router on a random port, real SQLite and
//! PostgreSQL databases, the real binary for process-level checks, headless Chromium.

mod alerts;
mod anonymity;
mod audit;
mod broadcasts;
mod browser;
mod browser_flow;
mod channels;
mod console;
mod console_support;
mod fakes;
mod helpers;
mod keys;
mod layers;
mod providers;
mod server;
mod store;
mod tips;
mod web;
