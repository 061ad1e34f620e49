//! The providers delivery sends through: built from the configuration in one place, where
//! adding a provider is one line, plus any a caller registers (a test's fake).

use super::DbVault;
use crate::channels::email::Mailer;
use crate::channels::sms::{AndroidClient, TwilioClient};
use crate::channels::telegram::TelegramClient;
use crate::channels::zalo::ZaloClient;
use crate::channels::{PhotoRef, Provider, Transport};
use crate::config::Config;
use crate::crypto::KeyRing;
use crate::store::Store;
use std::sync::Arc;

/// Largest photo fetched from a provider.
pub const MAX_PHOTO_BYTES: usize = 10 * 1024 * 1024;

/// The providers messages can go through, one per transport. Cheap to clone.
#[derive(Clone, Default)]
pub struct Providers {
    list: Vec<Arc<dyn Provider>>,
}

impl Providers {
    /// The providers the configuration enables. A new provider is one line here (and
    /// one file in `channels/`).
    pub fn from_config(
        c: &Config,
        store: &Store,
        keys: &Arc<KeyRing>,
    ) -> anyhow::Result<Providers> {
        let public_url = c.public_url.trim_end_matches('/');
        let mut p = Providers::default();
        if c.telegram.enabled {
            p.add(TelegramClient::new(&c.telegram)?);
        }
        if c.zalo.enabled {
            let vault = Arc::new(DbVault::new(store.clone(), keys.clone()));
            p.add(ZaloClient::new(&c.zalo, vault));
        }
        if c.sms.twilio.enabled {
            p.add(
                TwilioClient::new(&c.sms.twilio)
                    .with_status_callback(&format!("{public_url}/hooks/sms/twilio"))
                    .with_strip_diacritics(c.sms.strip_diacritics),
            );
        }
        if c.sms.android.enabled {
            p.add(AndroidClient::new(&c.sms.android).with_strip_diacritics(c.sms.strip_diacritics));
        }
        // Broadcast subscribers may choose email when there is a mail server.
        if c.smtp.enabled {
            p.add(Mailer::new(&c.smtp)?.with_rate_per_second(c.broadcast.email_rate_per_second));
        }
        Ok(p)
    }

    /// Adds a provider; it replaces one already listed for the same transport.
    pub fn add(&mut self, provider: impl Provider + 'static) -> &mut Providers {
        self.add_shared(Arc::new(provider))
    }

    /// Adds a shared provider; it replaces one already listed for the same transport.
    pub fn add_shared(&mut self, provider: Arc<dyn Provider>) -> &mut Providers {
        let t = provider.transport();
        self.list.retain(|p| p.transport() != t);
        self.list.push(provider);
        self
    }

    /// The provider of a transport, if there is one.
    pub fn get(&self, transport: Transport) -> Option<&Arc<dyn Provider>> {
        self.list.iter().find(|p| p.transport() == transport)
    }

    /// Every provider, in the order they were added.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<dyn Provider>> {
        self.list.iter()
    }

    /// The transports that have a provider.
    pub fn transports(&self) -> Vec<Transport> {
        self.list.iter().map(|p| p.transport()).collect()
    }

    /// Fetches a photo a person sent over `transport` from the provider that keeps it
    /// (Telegram's getFile, Zalo's image URL), at most [`MAX_PHOTO_BYTES`].
    pub async fn fetch_photo(
        &self,
        transport: Transport,
        photo: &PhotoRef,
    ) -> Result<Vec<u8>, String> {
        if let PhotoRef::Bytes(b) = photo {
            return Ok(b.clone());
        }
        match self.get(transport) {
            Some(p) => p.fetch_photo(photo, MAX_PHOTO_BYTES).await,
            None => Err("no provider can fetch this photo".into()),
        }
    }
}
