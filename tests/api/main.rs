//! One integration-test binary: the real router on a random port, real SQLite and
//! PostgreSQL databases, the real binary for process-level checks, headless Chromium.

mod alerts;
mod anonymity;
mod audit;
mod backup;
mod broadcasts;
mod browser;
mod browser_flow;
mod browser_pages;
mod channels;
mod config;
mod console;
mod console_support;
mod deploy;
mod doors;
mod erasure;
mod fakes;
mod fuzz_corpus;
mod helpers;
mod keys;
mod layers;
mod openapi;
mod providers;
mod reports;
mod retention;
mod server;
mod sms;
mod store;
mod tips;
mod web;
