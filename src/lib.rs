//! tinbao: an anonymous tip-reporting and hotline platform for commune drug-prevention
//! work. See DESIGN.md for the map: channels → intake → seal → store → police queue.

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
pub mod state;
pub mod store;
pub mod tips;
pub mod web;

pub use app::Application;
pub use config::Config;
pub use state::AppState;
