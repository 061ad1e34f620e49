//! Zalo's access and refresh tokens, sealed in the database so every process shares the
//! latest pair (a refresh token is single-use).

use crate::channels::zalo::{TokenVault, ZaloTokens};
use crate::crypto::KeyRing;
use crate::store::Store;
use futures_util::future::BoxFuture;
use std::sync::Arc;

const ZALO_TOKENS_META: &str = "zalo_tokens";

/// A [`TokenVault`] in the database, sealed under the key ring.
pub struct DbVault {
    store: Store,
    keys: Arc<KeyRing>,
}

impl DbVault {
    /// The vault of `store`, sealing with `keys`.
    pub fn new(store: Store, keys: Arc<KeyRing>) -> DbVault {
        DbVault { store, keys }
    }
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
