//! Starting the chat channels: provider clients from the configuration, Zalo's tokens
//! kept sealed in the database, photos fetched from the providers, and the Telegram
//! long-polling loop (one process of many polls, under a PostgreSQL advisory lock).

use super::outbox::Providers;
use super::sms::{AndroidClient, TwilioClient};
use super::telegram::TelegramClient;
use super::zalo::{TokenVault, ZaloClient, ZaloTokens};
use crate::config::{Config, TelegramMode};
use crate::crypto::KeyRing;
use crate::dialog::engine::DraftPhoto;
use crate::dialog::{Chat, PhotoSource};
use crate::store::Store;
use futures_util::future::BoxFuture;
use std::sync::Arc;
use std::time::Duration;

/// The advisory-lock key of the Telegram poller ("tinbao", job 2).
pub const TELEGRAM_POLL_LOCK: i64 = 0x7469_6e62_616f_0002;
const TELEGRAM_OFFSET_META: &str = "telegram_offset";
const ZALO_TOKENS_META: &str = "zalo_tokens";
/// Largest photo fetched from a provider.
const MAX_PHOTO_BYTES: usize = 10 * 1024 * 1024;

/// Zalo's access and refresh tokens, sealed in the database so every process shares the
/// latest pair (a refresh token is single-use).
pub struct DbVault {
    store: Store,
    keys: Arc<KeyRing>,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct SealedTokens {
    access_token: String,
    refresh_token: String,
    expires_at_ms: i64,
}

impl TokenVault for DbVault {
    fn load(&self) -> BoxFuture<'_, Option<ZaloTokens>> {
        Box::pin(async move {
            let sealed = self.store.meta(ZALO_TOKENS_META).await.ok()??;
            let plain = self.keys.open_record("zalo-tokens", "oa", &sealed).ok()?;
            let t: SealedTokens = serde_json::from_slice(&plain).ok()?;
            Some(ZaloTokens {
                access_token: t.access_token,
                refresh_token: t.refresh_token,
                expires_at_ms: t.expires_at_ms,
            })
        })
    }

    fn save<'a>(&'a self, tokens: &'a ZaloTokens) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let plain = serde_json::to_vec(&SealedTokens {
                access_token: tokens.access_token.clone(),
                refresh_token: tokens.refresh_token.clone(),
                expires_at_ms: tokens.expires_at_ms,
            })
            .unwrap_or_default();
            let sealed = self.keys.seal_record("zalo-tokens", "oa", &plain);
            if let Err(e) = self.store.set_meta(ZALO_TOKENS_META, &sealed).await {
                tracing::error!(error = %e, "could not keep the new Zalo tokens");
            }
        })
    }
}

/// The clients of every enabled provider.
pub fn providers(config: &Config, store: &Store, keys: &Arc<KeyRing>) -> anyhow::Result<Providers> {
    let telegram = match config.telegram.enabled {
        true => Some(TelegramClient::new(&config.telegram)?),
        false => None,
    };
    let zalo = config.zalo.enabled.then(|| {
        let vault = Arc::new(DbVault {
            store: store.clone(),
            keys: keys.clone(),
        });
        ZaloClient::new(&config.zalo, vault)
    });
    Ok(Providers {
        telegram,
        zalo,
        twilio: config.sms.twilio.enabled.then(|| {
            TwilioClient::new(&config.sms.twilio).with_status_callback(&format!(
                "{}/hooks/sms/twilio",
                config.public_url.trim_end_matches('/')
            ))
        }),
        android: config
            .sms
            .android
            .enabled
            .then(|| AndroidClient::new(&config.sms.android)),
        // Broadcast subscribers may choose email when there is a mail server.
        email: if config.smtp.enabled {
            Some(super::email::Mailer::new(&config.smtp)?)
        } else {
            None
        },
        sms_strip_diacritics: config.sms.strip_diacritics,
    })
}

/// Photos fetched from the provider that holds them.
pub struct ProviderPhotos(pub Providers);

impl PhotoSource for ProviderPhotos {
    fn fetch<'a>(&'a self, photo: &'a DraftPhoto) -> BoxFuture<'a, Result<Vec<u8>, String>> {
        Box::pin(async move {
            match (photo, &self.0.telegram, &self.0.zalo) {
                (DraftPhoto::Bytes(b), _, _) => Ok(b.clone()),
                (DraftPhoto::TelegramFile(id), Some(t), _) => {
                    t.fetch_photo(id, MAX_PHOTO_BYTES).await
                }
                (DraftPhoto::Url(url), _, Some(z)) => z.fetch_image(url, MAX_PHOTO_BYTES).await,
                _ => Err("no provider can fetch this photo".into()),
            }
        })
    }
}

/// In webhook mode, tells Telegram where to deliver updates (`public_url` +
/// `/hooks/telegram`, with the secret token), retrying until it answers.
pub fn spawn_telegram_webhook_registration(config: &Config, providers: &Providers) {
    let (Some(client), true) = (
        providers.telegram.clone(),
        config.telegram.enabled && config.telegram.mode == TelegramMode::Webhook,
    ) else {
        return;
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
}

/// Starts Telegram long polling when configured: one process at a time polls; the offset
/// moves on only after the updates are durably accepted, so a crash loses none.
pub fn spawn_telegram_poller(config: &Config, providers: &Providers, chat: Chat, store: Store) {
    let (Some(client), true) = (
        providers.telegram.clone(),
        config.telegram.enabled && config.telegram.mode == TelegramMode::Polling,
    ) else {
        return;
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
}
