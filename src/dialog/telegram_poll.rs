//! Telegram's side of the chat service: in webhook mode, telling Telegram where to
//! deliver updates; in polling mode, the long-polling loop that hands updates to
//! [`Chat::accept`] (one process of many polls, under a PostgreSQL advisory lock).

use super::Chat;
use crate::channels::telegram::TelegramClient;
use crate::config::{Config, TelegramMode};
use crate::store::Store;
use std::time::Duration;

/// The advisory-lock key of the Telegram poller ("tinbao", job 2).
pub const TELEGRAM_POLL_LOCK: i64 = 0x7469_6e62_616f_0002;
const TELEGRAM_OFFSET_META: &str = "telegram_offset";

/// The bot's client when Telegram is enabled in `mode`.
fn client_for(config: &Config, mode: TelegramMode) -> anyhow::Result<Option<TelegramClient>> {
    if !config.telegram.enabled || config.telegram.mode != mode {
        return Ok(None);
    }
    TelegramClient::new(&config.telegram).map(Some)
}

/// In webhook mode, tells Telegram where to deliver updates (`public_url` +
/// `/hooks/telegram`, with the secret token), retrying until it answers.
pub fn spawn_webhook_registration(config: &Config) -> anyhow::Result<()> {
    let Some(client) = client_for(config, TelegramMode::Webhook)? else {
        return Ok(());
    };
    let url = format!("{}/hooks/telegram", config.public_url.trim_end_matches('/'));
    let secret = config.telegram.webhook_secret.clone();
    tokio::spawn(async move {
        let mut wait = Duration::from_secs(1);
        while let Err(e) = client.set_webhook(&url, &secret).await {
            tracing::warn!(error = %e, "cannot register the Telegram webhook; retrying");
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(Duration::from_secs(300));
        }
    });
    Ok(())
}

/// Starts Telegram long polling when configured: one process at a time polls; the offset
/// moves on only after the updates are durably accepted, so a crash loses none.
pub fn spawn_poller(config: &Config, chat: Chat, store: Store) -> anyhow::Result<()> {
    let Some(client) = client_for(config, TelegramMode::Polling)? else {
        return Ok(());
    };
    let timeout = config.telegram.poll_timeout_seconds;
    tokio::spawn(async move {
        let mut lock = store.runner_lock(TELEGRAM_POLL_LOCK);
        let mut webhook_cleared = false;
        loop {
            if !lock.is_runner().await {
                tokio::time::sleep(Duration::from_secs(5)).await;
                continue;
            }
            if !webhook_cleared {
                // getUpdates refuses to work while a webhook is set.
                webhook_cleared = client.delete_webhook().await.is_ok();
            }
            let offset = match store.meta(TELEGRAM_OFFSET_META).await {
                Ok(v) => v
                    .and_then(|b| String::from_utf8(b).ok())
                    .and_then(|s| s.parse::<i64>().ok())
                    .unwrap_or(0),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the Telegram offset");
                    tokio::time::sleep(Duration::from_secs(2)).await;
                    continue;
                }
            };
            let updates = match client.get_updates(offset, timeout).await {
                Ok(u) => u,
                Err(e) => {
                    tracing::warn!(error = %e, "Telegram getUpdates failed; retrying");
                    tokio::time::sleep(Duration::from_secs(2)).await;
                    continue;
                }
            };
            let Some(last) = updates.iter().map(|u| u.0).max() else {
                continue;
            };
            let events = updates.into_iter().filter_map(|u| u.1).collect();
            if let Err(e) = chat.accept(events).await {
                tracing::error!(error = %e, "could not store Telegram updates; polling them again");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
            let next = (last + 1).to_string();
            if let Err(e) = store.set_meta(TELEGRAM_OFFSET_META, next.as_bytes()).await {
                tracing::warn!(error = %e, "cannot keep the Telegram offset");
            }
        }
    });
    Ok(())
}
