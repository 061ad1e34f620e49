//! MMS photos on the SMS path: fetched from the gateway that keeps them (bounded in
//! count, size and time), attached through intake like the web form's and the chat
//! bots' photos. A photo that could not be fetched or read never silently disappears: the
//! tip carries a note of how many are missing, and the tipster's answer says so.

use super::{Chat, ChatError};
use crate::channels::{PhotoRef, Transport};
use crate::clock::now_ms;
use crate::intake::{IntakeError, MAX_PHOTOS};
use std::time::Duration;

/// Every photo of one message is fetched within this long (each download also has the
/// gateway client's own timeouts); what has not arrived by then is missing. Well under
/// the inbox lease, so a slow gateway cannot make two processors take one event.
const MMS_FETCH_TIMEOUT: Duration = Duration::from_secs(30);

/// The photos of one SMS/MMS as fetched: the files that arrived, and how many did not
/// (failed, too large, too slow, or beyond [`MAX_PHOTOS`]).
#[derive(Debug, Default)]
pub(super) struct MmsPhotos {
    pub bytes: Vec<Vec<u8>>,
    pub missing: usize,
}

/// Whether intake refused a message's photos (a file it could not read or clean).
pub(super) fn photos_refused(e: &IntakeError) -> bool {
    matches!(e, IntakeError::Invalid(errors) if errors.iter().any(|e| e.field == "photos"))
}

impl Chat {
    /// Fetches a message's photos, all at once, within [`MMS_FETCH_TIMEOUT`].
    pub(super) async fn fetch_mms(&self, transport: Transport, photos: &[PhotoRef]) -> MmsPhotos {
        if photos.is_empty() {
            return MmsPhotos::default();
        }
        let wanted = &photos[..photos.len().min(MAX_PHOTOS)];
        let fetches =
            futures_util::future::join_all(wanted.iter().map(|p| self.fetch_photo(transport, p)));
        let Ok(results) = tokio::time::timeout(MMS_FETCH_TIMEOUT, fetches).await else {
            tracing::warn!(photos = photos.len(), "MMS photos took too long to fetch");
            return MmsPhotos {
                bytes: Vec::new(),
                missing: photos.len(),
            };
        };
        let mut out = MmsPhotos {
            bytes: Vec::with_capacity(wanted.len()),
            missing: photos.len() - wanted.len(),
        };
        for r in results {
            match r {
                Ok(b) => out.bytes.push(b),
                // The error names the failure (status, size, timeout), never the URL.
                Err(e) => {
                    tracing::warn!(error = %e, "an MMS photo could not be fetched");
                    out.missing += 1;
                }
            }
        }
        out
    }

    /// Adds an SMS/MMS to an open tip with the photos that arrived; if intake cannot read
    /// them, the text goes alone and they count as missing. Returns how many are missing
    /// (noted on the tip).
    pub(super) async fn sms_follow_up(
        &self,
        tip_id: &str,
        text: &str,
        photos: MmsPhotos,
    ) -> Result<usize, ChatError> {
        let intake = &self.inner.intake;
        let MmsPhotos { bytes, mut missing } = photos;
        let n = bytes.len();
        match intake.chat_reply(tip_id, text, bytes).await {
            Ok(_) => {}
            Err(e) if n > 0 && photos_refused(&e) => {
                missing += n;
                intake.chat_reply(tip_id, text, Vec::new()).await?;
            }
            Err(e) => return Err(e.into()),
        }
        self.note_photo_gap(tip_id, missing).await;
        Ok(missing)
    }

    /// Notes on the tip, for the officer, that `missing` photos did not arrive. The tip
    /// and its answer are already committed: a failure here is logged, not retried, so
    /// the tipster's message is not added twice.
    pub(super) async fn note_photo_gap(&self, tip_id: &str, missing: usize) {
        if missing == 0 {
            return;
        }
        metrics::counter!("tinbao_mms_photos_missing_total").increment(missing as u64);
        let missing = i64::try_from(missing).unwrap_or(i64::MAX);
        if let Err(e) = self
            .inner
            .store
            .add_photo_gap(tip_id, missing, now_ms())
            .await
        {
            tracing::warn!(error = %e, tip = tip_id, "could not note a tip's missing photos");
        }
    }

    /// The tipster's line about photos that did not arrive; none when all did.
    pub(super) fn photos_missing_text(&self, lang: &str, missing: usize) -> Option<String> {
        (missing > 0).then(|| {
            self.inner
                .bot
                .fill(lang, "sms.photos_missing", &[("n", &missing.to_string())])
        })
    }
}
