//! MMS photos on the SMS path: fetched from the gateway that keeps them (bounded in
//! count, size and time), attached through intake like the web form's and the chat
//! bots' photos. A photo that could not be fetched or read never silently disappears: the
//! tip carries a note of how many are missing, and the tipster's answer says so.

use super::{Chat, ChatError};
use crate::channels::{PhotoRef, Transport};
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

/// Counts photos that did not arrive (the gap itself is noted in the tip's or the
/// message's own transaction).
pub(super) fn count_missing(missing: usize) {
    if missing > 0 {
        metrics::counter!("tinbao_mms_photos_missing_total").increment(missing as u64);
    }
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
        let withheld = wanted.iter().all(|p| matches!(p, PhotoRef::Withheld));
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
                Err(_) if withheld => out.missing += 1,
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
        if text.trim().is_empty() && n == 0 {
            // Nothing arrived but the news that photos were sent: no empty message, only
            // the gap.
            if missing > 0 {
                let count = i64::try_from(missing).unwrap_or(i64::MAX);
                self.inner
                    .store
                    .add_photo_gap(tip_id, count, crate::clock::now_ms())
                    .await?;
            }
            count_missing(missing);
            return Ok(missing);
        }
        match intake.chat_reply(tip_id, text, bytes, missing).await {
            Ok(_) => {}
            Err(e) if n > 0 && photos_refused(&e) => {
                missing += n;
                intake.chat_reply(tip_id, text, Vec::new(), missing).await?;
            }
            Err(e) => return Err(e.into()),
        }
        count_missing(missing);
        Ok(missing)
    }

    /// The tipster's line about photos that did not arrive; none when all did. When the
    /// gateway never hands MMS content over (`withheld`), sending again by MMS is no use:
    /// the line says how else to send them.
    pub(super) fn photos_missing_text(
        &self,
        lang: &str,
        missing: usize,
        withheld: bool,
    ) -> Option<String> {
        let bot = &self.inner.bot;
        (missing > 0).then(|| match withheld {
            true => bot.text(lang, "sms.mms_unsupported").to_owned(),
            false => bot.fill(lang, "sms.photos_missing", &[("n", &missing.to_string())]),
        })
    }
}
