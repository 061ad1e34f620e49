//! Fake providers on loopback, speaking each provider's documented wire format: the
//! Telegram Bot API, the Zalo OA API, Twilio's Messages API and the Android SMS Gateway.
//! Each records what it was sent and can be told to fail (500, 429 with Retry-After)
//! before succeeding. `pigeon` is a provider tinbao does not ship, defined here only.

pub mod android;
pub mod pigeon;
pub mod telegram;
pub mod twilio;
pub mod zalo;
