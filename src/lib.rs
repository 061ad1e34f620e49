//! tinbao: an anonymous tip-reporting and hotline platform for commune drug-prevention
//! work. A tip flows channels → intake → seal → store → police queue (DESIGN.md).
//!
//! # The map
//!
//! Modules in layers; a module imports only from the layers below it, and from its own
//! layer only along the few arrows `tests/api/layers.rs` lists (the test fails on any
//! other, and on a cycle):
//!
//! | layer | modules | what they are |
//! |---|---|---|
//! | 0 start | `main`, [`cli`], [`app`] | the command line; `app` builds everything from the configuration and runs it, and nothing imports it |
//! | 1 edges | [`web`], [`console`] | residents' pages, the JSON API, the webhooks; the police, village-head pages. Each turns its errors into an answer in one place: `web::api::ApiFailure`, `web::pages::Refusal`, the webhooks' refusal, `console::error::ConsoleError` |
//! | 2 request state | [`state`] | `AppState` (the store and the services a handler may reach), the reader's language, the client address for rate limits only, the limits, the console's caches |
//! | 3 services | [`intake`], [`dialog`], [`broadcast`], [`reports`], [`retention`], [`delivery`], [`audit`], [`accounts`], [`alerts`] | the channel-neutral intake; the chat conversation (and Telegram polling); campaign broadcasts (and `broadcast::rules`, who may do what); the monthly reports; retention (closed tips' content destroyed on time); the durable outbox and its dispatcher over the providers; the hash-chained audit log; accounts, passwords, TOTP; officers' email alerts. Each returns its own error enum, store errors wrapped |
//! | 4 providers | [`channels`] | one file per provider behind one `channels::Provider` trait (Telegram, Zalo, SMS through Twilio or the Android gateway, email): verify and parse what arrives, send what leaves; no SQL, no pages |
//! | 5 data | [`store`], [`tips`], [`geo`] | the only SQL (SQLite and PostgreSQL behind one API, `store::StoreError`); the domain: categories, priority, status machine, routing; provinces, communes, villages |
//! | 6 foundations | [`crypto`], [`config`], [`i18n`], [`clock`] | keys, sealing, pseudonyms, receipts, the one constant-time comparison; the configuration; texts; the time |
//!
//! Adding a provider is one file in `channels/` implementing `Provider` and one line in
//! `delivery::Providers::from_config` (or `Application::build_with` for one defined
//! elsewhere, as the test `providers` does).

pub mod accounts;
pub mod alerts;
pub mod app;
pub mod audit;
pub mod broadcast;
pub mod channels;
pub mod cli;
pub mod clock;
pub mod config;
pub mod console;
pub mod crypto;
pub mod delivery;
pub mod dialog;
pub mod geo;
pub mod i18n;
pub mod intake;
pub mod reports;
pub mod retention;
pub mod state;
pub mod store;
pub mod tips;
pub mod web;

pub use app::Application;
pub use config::Config;
pub use state::AppState;
