//! One submission, one record: the tip form and the reply form carry a random submission
//! token, and a form that files something answers with a redirect (post/redirect/get) to
//! a page that shows its result once.
//!
//! - The same token posted again (a double tap, a reload of the POST, a browser or a
//!   flaky connection retrying it) while or after the first is being filed does not file
//!   again: it waits for the first and gets the same answer. A token is remembered for
//!   [`KEEP`] in this process (a failed attempt is not remembered: the form comes back
//!   with its errors and the same token, and the corrected one files).
//! - The answer is a `303` to a GET page, with a short-lived, `HttpOnly`, path-bound
//!   cookie that carries the receipt sealed under the server's record key
//!   ([`KeyRing::seal_record`]), never in a URL and never stored. The page shows it once
//!   and clears the cookie, and the token is marked shown: a reload, Back, or the same URL
//!   opened later shows no receipt.

use super::AppState;
use crate::crypto::{KeyRing, Receipt};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::OnceCell;

/// How long a submission token is remembered.
pub const KEEP: Duration = Duration::from_secs(15 * 60);
/// How long the cookie that carries a result to its page lives.
pub const VIEW_SECONDS: i64 = 10 * 60;
/// Most tokens remembered at once; past it the oldest half is forgotten (the forms that
/// file are rate-limited per client, so this is reached only by a flood).
const MAX_TOKENS: usize = 50_000;
/// A token is 16 random bytes, hex.
const TOKEN_LEN: usize = 32;

/// A fresh submission token for a form.
pub fn new_token() -> String {
    hex::encode(crate::crypto::random_bytes::<16>())
}

/// The token a form sent if it is one of ours in shape, or a fresh one (a form from an
/// older page files as it is).
pub fn token_or_new(sent: &str) -> String {
    valid_token(sent).map_or_else(new_token, str::to_owned)
}

/// The token a form sent, if it is one of ours in shape.
pub fn valid_token(sent: &str) -> Option<&str> {
    let t = sent.trim();
    (t.len() == TOKEN_LEN && t.bytes().all(|b| b.is_ascii_hexdigit())).then_some(t)
}

/// One token's fate: filed (with the cookie value that shows its result), and whether
/// that result was shown.
pub struct Slot {
    at: Instant,
    filed: OnceCell<String>,
    shown: AtomicBool,
}

impl Slot {
    /// Files once: the first caller runs `file`; callers with the same token wait for it
    /// and get its value. A failure is not kept: the next caller runs `file` again.
    pub async fn once<E, F>(&self, file: F) -> Result<String, E>
    where
        F: std::future::Future<Output = Result<String, E>>,
    {
        self.filed.get_or_try_init(|| file).await.cloned()
    }

    /// Whether the result was already shown; marks it shown.
    pub fn take_shown(&self) -> bool {
        self.shown.swap(true, Ordering::SeqCst)
    }

    /// Whether the result was shown.
    pub fn was_shown(&self) -> bool {
        self.shown.load(Ordering::SeqCst)
    }
}

/// Most bytes of photos held for forms sent back with an error, all forms together; past
/// it the oldest drafts' photos are let go (their form then asks to choose them again).
const MAX_HELD_BYTES: usize = 128 * 1024 * 1024;

/// What is held for one form: the photos of a form sent back with an error, and the
/// fields of a draft the page asked to see again (the no-script place pickers).
struct Held {
    at: Instant,
    photos: Vec<Vec<u8>>,
    draft: Vec<u8>,
}

impl Held {
    fn size(&self) -> usize {
        self.photos.iter().map(Vec::len).sum::<usize>() + self.draft.len()
    }
}

/// The tokens of this process, and the photos held for forms sent back with an error.
#[derive(Default)]
pub struct Submissions {
    slots: Mutex<HashMap<String, Arc<Slot>>>,
    held: Mutex<HashMap<String, Held>>,
}

impl Submissions {
    /// The slot of `token`, new or remembered.
    pub fn slot(&self, token: &str) -> Arc<Slot> {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        if slots.len() >= MAX_TOKENS {
            let now = Instant::now();
            slots.retain(|_, s| now.duration_since(s.at) < KEEP);
            if slots.len() >= MAX_TOKENS {
                let mut ages: Vec<Instant> = slots.values().map(|s| s.at).collect();
                ages.sort_unstable();
                let cut = ages[ages.len() / 2];
                slots.retain(|_, s| s.at > cut);
            }
        }
        let fresh = |slots: &mut HashMap<String, Arc<Slot>>| {
            let slot = Arc::new(Slot {
                at: Instant::now(),
                filed: OnceCell::new(),
                shown: AtomicBool::new(false),
            });
            slots.insert(token.to_owned(), slot.clone());
            slot
        };
        match slots.get(token) {
            Some(s) if s.at.elapsed() < KEEP => s.clone(),
            _ => fresh(&mut slots),
        }
    }

    /// The slot of `token` if it is remembered.
    pub fn get(&self, token: &str) -> Option<Arc<Slot>> {
        let slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        slots.get(token).filter(|s| s.at.elapsed() < KEEP).cloned()
    }

    /// Holds the photos of a form sent back with an error, for [`KEEP`], so that the
    /// corrected form needs not choose them again; `false` when they cannot be held (too
    /// large). They stay in this process's memory only, as they arrived (intake cleans
    /// them when the tip is filed).
    pub fn hold_photos(&self, token: &str, photos: Vec<Vec<u8>>) -> bool {
        self.hold(token, Vec::new(), photos).is_ok()
    }

    /// Holds a draft form (its fields as the page encodes them, and its photos) for
    /// [`KEEP`], in this process's memory only, so that a page can be sent with a
    /// redirect and shown again by a GET; the photos back when it is too large to hold.
    pub fn hold(
        &self,
        token: &str,
        draft: Vec<u8>,
        photos: Vec<Vec<u8>>,
    ) -> Result<(), Vec<Vec<u8>>> {
        let entry = Held {
            at: Instant::now(),
            photos,
            draft,
        };
        let size = entry.size();
        if size > MAX_HELD_BYTES / 4 {
            return Err(entry.photos);
        }
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        held.retain(|_, h| h.at.elapsed() < KEEP);
        held.remove(token);
        let mut total: usize = held.values().map(Held::size).sum();
        while total + size > MAX_HELD_BYTES {
            let Some(oldest) = held
                .iter()
                .min_by_key(|(_, h)| h.at)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            if let Some(h) = held.remove(&oldest) {
                total -= h.size();
            }
        }
        held.insert(token.to_owned(), entry);
        Ok(())
    }

    /// The draft held for a form and how many photos wait with it, left in place (a
    /// reload shows it again).
    pub fn draft(&self, token: &str) -> Option<(Vec<u8>, usize)> {
        let held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        held.get(token)
            .filter(|h| h.at.elapsed() < KEEP && !h.draft.is_empty())
            .map(|h| (h.draft.clone(), h.photos.len()))
    }

    /// Takes the photos held for a form (none if nothing is held), and lets its draft go.
    pub fn take_photos(&self, token: &str) -> Vec<Vec<u8>> {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        match held.remove(token) {
            Some(h) if h.at.elapsed() < KEEP => h.photos,
            _ => Vec::new(),
        }
    }

    /// Files once per `token` ([`Slot::once`]): the same token again waits for the first
    /// filing and gets its value; a failed filing is forgotten, so the corrected form files.
    pub async fn file_once<E>(
        &self,
        token: &str,
        file: impl std::future::Future<Output = Result<String, E>>,
    ) -> Result<String, E> {
        let slot = self.slot(token);
        let filed = slot.once(file).await;
        if filed.is_err() {
            drop(slot);
            self.forget_failed(token);
        }
        filed
    }

    /// Forgets a token whose filing failed and that nobody else is waiting on, so a
    /// flood of bad forms leaves nothing behind.
    pub fn forget_failed(&self, token: &str) {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = slots.get(token) {
            if !s.filed.initialized() && Arc::strong_count(s) == 1 {
                slots.remove(token);
            }
        }
    }
}

/// The cookie value that carries `receipt` to its page: expiry, token, and the receipt
/// sealed for this `kind` of page, bound to both.
pub fn seal_view(keys: &KeyRing, kind: &str, token: &str, receipt: &Receipt, now_s: i64) -> String {
    let exp = now_s + VIEW_SECONDS;
    let sealed = keys.seal_record(kind, &format!("{exp}:{token}"), receipt.digits().as_bytes());
    let mut raw = Vec::with_capacity(8 + TOKEN_LEN + sealed.len());
    raw.extend_from_slice(&exp.to_be_bytes());
    raw.extend_from_slice(token.as_bytes());
    raw.extend_from_slice(&sealed);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
}

/// Opens a cookie value made by [`seal_view`] for `kind`: the token and the receipt, if it
/// is authentic and not expired.
pub fn open_view(keys: &KeyRing, kind: &str, value: &str, now_s: i64) -> Option<(String, Receipt)> {
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(value.trim())
        .ok()?;
    if raw.len() <= 8 + TOKEN_LEN {
        return None;
    }
    let exp = i64::from_be_bytes(raw[..8].try_into().ok()?);
    if exp < now_s || exp > now_s + VIEW_SECONDS {
        return None;
    }
    let token = std::str::from_utf8(&raw[8..8 + TOKEN_LEN]).ok()?;
    let digits = keys
        .open_record(kind, &format!("{exp}:{token}"), &raw[8 + TOKEN_LEN..])
        .ok()?;
    let receipt = Receipt::parse(std::str::from_utf8(&digits).ok()?).ok()?;
    Some((token.to_owned(), receipt))
}

/// The `Set-Cookie` value that hands a view to the page at `path` (`Secure` is added over
/// HTTPS by the web layer, for every cookie).
pub fn view_cookie(name: &str, path: &str, value: &str) -> String {
    format!("{name}={value}; Path={path}; Max-Age={VIEW_SECONDS}; HttpOnly; SameSite=Strict")
}

/// The `Set-Cookie` value that clears it.
pub fn clear_cookie(name: &str, path: &str) -> String {
    format!("{name}=; Path={path}; Max-Age=0; HttpOnly; SameSite=Strict")
}

/// The value of cookie `name` in a request's headers.
pub fn cookie<'a>(headers: &'a axum::http::HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// Unix seconds now.
pub fn now_s() -> i64 {
    crate::clock::now_ms().div_euclid(1000)
}

/// The `303` to the page that shows a filed form's result once: with the cookie that
/// carries it, unless it was shown already (a form sent again after its result was seen
/// gets the page without it).
pub fn view_redirect(
    state: &AppState,
    to: &str,
    cookie: &str,
    view: &str,
    token: &str,
) -> Response {
    let mut res = (
        StatusCode::SEE_OTHER,
        [(header::LOCATION, to), (header::CACHE_CONTROL, "no-store")],
    )
        .into_response();
    let shown = state.submissions.get(token).is_some_and(|s| s.was_shown());
    if !shown {
        let value = view_cookie(cookie, to, view);
        if let Ok(v) = HeaderValue::from_str(&value) {
            res.headers_mut().insert(header::SET_COOKIE, v);
        }
    }
    res
}

/// Opens the view a request carries for `kind`, once: `None` when there is none, it is
/// not authentic or expired, or its result was already shown in this process.
pub fn take_view(state: &AppState, headers: &HeaderMap, name: &str, kind: &str) -> Option<Receipt> {
    let value = cookie(headers, name)?;
    let (token, receipt) = open_view(state.intake.keys(), kind, value, now_s())?;
    // Shown once per token: the slot may be gone (another process, a restart), and then
    // the cleared cookie is what keeps it from showing again.
    let already = state
        .submissions
        .get(&token)
        .is_some_and(|s| s.take_shown());
    (!already).then_some(receipt)
}

/// A page that shows a result once: never cached, and the cookie cleared.
pub fn shown_once(mut res: Response, cookie: &str, path: &str) -> Response {
    let clear = clear_cookie(cookie, path);
    if let Ok(v) = HeaderValue::from_str(&clear) {
        res.headers_mut().insert(header::SET_COOKIE, v);
    }
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_token_files_once_and_a_failure_is_not_kept() {
        let subs = Submissions::default();
        let token = new_token();
        assert!(valid_token(&token).is_some());
        assert!(valid_token("../../etc").is_none());
        let slot = subs.slot(&token);
        let failed: Result<String, &str> = slot.once(async { Err("invalid") }).await;
        assert!(failed.is_err());
        let first: Result<String, &str> = slot.once(async { Ok("a".to_owned()) }).await;
        let again: Result<String, &str> =
            subs.slot(&token).once(async { Ok("b".to_owned()) }).await;
        assert_eq!((first.unwrap(), again.unwrap()), ("a".into(), "a".into()));
        assert!(!slot.take_shown());
        assert!(slot.take_shown());
        // A failed token nobody holds is forgotten.
        let other = new_token();
        let s = subs.slot(&other);
        let _: Result<String, &str> = s.once(async { Err("x") }).await;
        drop(s);
        subs.forget_failed(&other);
        assert!(subs.get(&other).is_none());
        // Photos held for a form come back once.
        assert!(subs.hold_photos(&token, vec![vec![1, 2], vec![3]]));
        assert_eq!(subs.take_photos(&token), vec![vec![1, 2], vec![3]]);
        assert!(subs.take_photos(&token).is_empty());
        assert!(!subs.hold_photos(&token, vec![vec![0; MAX_HELD_BYTES]]));
        // A draft is shown as often as asked for, until its photos are taken.
        assert!(subs.hold(&token, b"{}".to_vec(), vec![vec![9]]).is_ok());
        assert_eq!(subs.draft(&token), Some((b"{}".to_vec(), 1)));
        assert_eq!(subs.draft(&token), Some((b"{}".to_vec(), 1)));
        assert_eq!(subs.take_photos(&token), vec![vec![9]]);
        assert!(subs.draft(&token).is_none());
    }

    #[test]
    fn a_view_opens_only_for_its_kind_and_before_it_expires() {
        let keys = KeyRing::generate();
        let receipt = Receipt::generate();
        let token = new_token();
        let v = seal_view(&keys, "receipt-view", &token, &receipt, 1_000);
        let (t, r) = open_view(&keys, "receipt-view", &v, 1_100).unwrap();
        assert_eq!((t.as_str(), r.digits()), (token.as_str(), receipt.digits()));
        assert!(open_view(&keys, "status-view", &v, 1_100).is_none());
        assert!(open_view(&keys, "receipt-view", &v, 1_000 + VIEW_SECONDS + 1).is_none());
        assert!(open_view(&KeyRing::generate(), "receipt-view", &v, 1_100).is_none());
        assert!(open_view(&keys, "receipt-view", "AAAA", 1_100).is_none());
        // The receipt is not readable in the cookie.
        assert!(!v.contains(receipt.digits()));
    }
}
