//! Keys and sealing: the key ring (KEKs and the MAC key), per-tip data keys wrapped under a
//! KEK, fields sealed with associated data binding them to their tip and field, receipts,
//! and keyed pseudonyms. Nothing else in the program touches a key.

mod keyfile;
mod pseudonym;
mod receipt;

pub use keyfile::{KeyChange, KeyFileError, KeyFileLock, KeyRing};
pub use receipt::{Receipt, ReceiptError};

use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};

/// A sealed value could not be opened: wrong key, wrong tip or field, or tampered bytes.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("sealed data could not be opened (wrong key, wrong place, or tampered)")]
pub struct OpenError;

/// Compares two secrets (tokens, digests, signatures) in time independent of where, or
/// whether their lengths, differ: both are signed under a fresh random key and the tags
/// compared by ring's constant-time check (ring keeps its raw comparison private).
pub fn constant_eq(expected: &[u8], received: &[u8]) -> bool {
    let Ok(key) = hmac::Key::generate(hmac::HMAC_SHA256, &SystemRandom::new()) else {
        return false;
    };
    let tag = hmac::sign(&key, received);
    hmac::verify(&key, expected, tag.as_ref()).is_ok()
}

/// Fills a fresh array with random bytes from the operating system.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    SystemRandom::new()
        .fill(&mut out)
        .expect("the operating system's random source failed");
    out
}

fn seal_with(key: &LessSafeKey, aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
    let nonce_bytes: [u8; NONCE_LEN] = random_bytes();
    let mut out = Vec::with_capacity(NONCE_LEN + plaintext.len() + 16);
    out.extend_from_slice(&nonce_bytes);
    out.extend_from_slice(plaintext);
    let tag = key
        .seal_in_place_separate_tag(
            Nonce::assume_unique_for_key(nonce_bytes),
            Aad::from(aad),
            &mut out[NONCE_LEN..],
        )
        .expect("AES-GCM sealing cannot fail for in-memory sizes");
    out.extend_from_slice(tag.as_ref());
    out
}

fn open_with(key: &LessSafeKey, aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>, OpenError> {
    if sealed.len() < NONCE_LEN + 16 {
        return Err(OpenError);
    }
    let (nonce, rest) = sealed.split_at(NONCE_LEN);
    let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| OpenError)?;
    let mut buf = rest.to_vec();
    let plain = key
        .open_in_place(nonce, Aad::from(aad), &mut buf)
        .map_err(|_| OpenError)?;
    let len = plain.len();
    buf.truncate(len);
    Ok(buf)
}

fn wrap_aad(tip_id: &str, key_id: &str) -> Vec<u8> {
    format!("tinbao/v1|dek|tip:{tip_id}|kek:{key_id}").into_bytes()
}

/// Wraps a tip's raw data key under the KEK `key_id`.
fn wrap_under(key_id: &str, kek: &LessSafeKey, tip_id: &str, raw: &[u8]) -> WrappedKey {
    WrappedKey {
        key_id: key_id.to_owned(),
        wrapped: seal_with(kek, &wrap_aad(tip_id, key_id), raw),
    }
}

fn aes_key(bytes: &[u8]) -> LessSafeKey {
    LessSafeKey::new(UnboundKey::new(&AES_256_GCM, bytes).expect("32-byte AES key"))
}

/// A tip's own data key, able to seal and open that tip's fields only.
pub struct TipKey {
    key: LessSafeKey,
    tip_id: String,
    /// For a new tip's key: counts it as in flight under its KEK until dropped.
    _wrapping: Option<keyfile::WrapGuard>,
}

/// A data key wrapped under a KEK, as stored beside the tip.
#[derive(Debug, Clone)]
pub struct WrappedKey {
    pub key_id: String,
    pub wrapped: Vec<u8>,
}

impl TipKey {
    fn aad(&self, field: &str) -> Vec<u8> {
        format!("tinbao/v1|tip:{}|field:{}", self.tip_id, field).into_bytes()
    }

    /// Seals `plaintext` so that it opens only for this tip and this field name.
    pub fn seal(&self, field: &str, plaintext: &[u8]) -> Vec<u8> {
        seal_with(&self.key, &self.aad(field), plaintext)
    }

    /// Seals a string (see [`TipKey::seal`]).
    pub fn seal_str(&self, field: &str, plaintext: &str) -> Vec<u8> {
        self.seal(field, plaintext.as_bytes())
    }

    /// Opens a value sealed for this tip and field.
    pub fn open(&self, field: &str, sealed: &[u8]) -> Result<Vec<u8>, OpenError> {
        open_with(&self.key, &self.aad(field), sealed)
    }

    /// Opens a sealed string.
    pub fn open_str(&self, field: &str, sealed: &[u8]) -> Result<String, OpenError> {
        String::from_utf8(self.open(field, sealed)?).map_err(|_| OpenError)
    }

    /// The tip this key belongs to.
    pub fn tip_id(&self) -> &str {
        &self.tip_id
    }
}

impl KeyRing {
    fn wrap_aad(tip_id: &str, key_id: &str) -> Vec<u8> {
        wrap_aad(tip_id, key_id)
    }

    /// Makes a fresh data key for a new tip, wrapped under the current KEK. Until the
    /// returned key is dropped (the tip written, or given up), the ring counts a write in
    /// flight under that KEK ([`KeyRing::wrapping_ids`]).
    pub fn new_tip_key(&self, tip_id: &str) -> (TipKey, WrappedKey) {
        let raw: [u8; 32] = random_bytes();
        let (keks, guard) = self.snapshot_for_wrap();
        let (key_id, kek) = keks.current();
        let wrapped = wrap_under(key_id, kek, tip_id, &raw);
        (
            TipKey {
                key: aes_key(&raw),
                tip_id: tip_id.to_owned(),
                _wrapping: Some(guard),
            },
            wrapped,
        )
    }

    fn unwrap_raw(&self, tip_id: &str, wrapped: &WrappedKey) -> Result<Vec<u8>, OpenError> {
        let keks = self.snapshot();
        let kek = keks.kek(&wrapped.key_id).ok_or(OpenError)?;
        open_with(
            kek,
            &Self::wrap_aad(tip_id, &wrapped.key_id),
            &wrapped.wrapped,
        )
    }

    /// Unwraps a tip's data key; fails if it belongs to another tip or the KEK is absent.
    pub fn open_tip_key(&self, tip_id: &str, wrapped: &WrappedKey) -> Result<TipKey, OpenError> {
        let raw = self.unwrap_raw(tip_id, wrapped)?;
        if raw.len() != 32 {
            return Err(OpenError);
        }
        Ok(TipKey {
            key: aes_key(&raw),
            tip_id: tip_id.to_owned(),
            _wrapping: None,
        })
    }

    /// Re-wraps a data key under the current KEK (for `keys rewrap`), and proves the new
    /// wrap opens to the same data key before answering it.
    pub fn rewrap(&self, tip_id: &str, wrapped: &WrappedKey) -> Result<WrappedKey, OpenError> {
        let raw = self.unwrap_raw(tip_id, wrapped)?;
        let keks = self.snapshot();
        let (key_id, kek) = keks.current();
        let new = wrap_under(key_id, kek, tip_id, &raw);
        let back = open_with(kek, &Self::wrap_aad(tip_id, key_id), &new.wrapped)?;
        if !constant_eq(&back, &raw) {
            return Err(OpenError);
        }
        Ok(new)
    }

    /// Re-wraps a data key under the KEK `key_id` (a retention day's), and proves the new
    /// wrap opens to the same data key before answering it.
    pub fn rewrap_to(
        &self,
        tip_id: &str,
        wrapped: &WrappedKey,
        key_id: &str,
    ) -> Result<WrappedKey, OpenError> {
        let raw = self.unwrap_raw(tip_id, wrapped)?;
        let keks = self.snapshot();
        let kek = keks.kek(key_id).ok_or(OpenError)?;
        let new = wrap_under(key_id, kek, tip_id, &raw);
        let back = open_with(kek, &Self::wrap_aad(tip_id, key_id), &new.wrapped)?;
        if !constant_eq(&back, &raw) {
            return Err(OpenError);
        }
        Ok(new)
    }

    /// A value sealed under a KEK that proves, at the next start, that the same KEK is back.
    pub fn key_check(&self, key_id: &str) -> Option<Vec<u8>> {
        let keks = self.snapshot();
        let kek = keks.kek(key_id)?;
        Some(seal_with(
            kek,
            format!("tinbao/v1|check|kek:{key_id}").as_bytes(),
            b"tinbao key check",
        ))
    }

    /// Whether `check` was made by [`KeyRing::key_check`] under this ring's KEK `key_id`.
    pub fn verify_key_check(&self, key_id: &str, check: &[u8]) -> bool {
        self.snapshot().kek(key_id).is_some_and(|kek| {
            open_with(
                kek,
                format!("tinbao/v1|check|kek:{key_id}").as_bytes(),
                check,
            )
            .is_ok()
        })
    }

    fn mac(&self, purpose: &str, value: &[u8]) -> [u8; 32] {
        let mut ctx = hmac::Context::with_key(self.mac_key());
        ctx.update(purpose.as_bytes());
        ctx.update(b"\0");
        ctx.update(value);
        let tag = ctx.sign();
        let mut out = [0u8; 32];
        out.copy_from_slice(tag.as_ref());
        out
    }

    /// The stored form of a receipt: an HMAC under the server's MAC key.
    pub fn receipt_mac(&self, receipt: &Receipt) -> Vec<u8> {
        self.mac("receipt", receipt.digits().as_bytes()).to_vec()
    }

    /// A keyed pseudonym for a sender address (phone number, chat id) of a given kind.
    pub fn pseudonym(&self, kind: &str, value: &str) -> Vec<u8> {
        self.mac(&format!("pseudonym:{kind}"), value.as_bytes())
            .to_vec()
    }

    /// Seals an account's secret (its TOTP seed) bound to the account id.
    pub fn seal_account_secret(&self, account_id: &str, secret: &[u8]) -> Vec<u8> {
        seal_with(
            self.account_key(),
            format!("tinbao/v1|account:{account_id}").as_bytes(),
            secret,
        )
    }

    /// Opens a secret sealed by [`KeyRing::seal_account_secret`] for this account.
    pub fn open_account_secret(
        &self,
        account_id: &str,
        sealed: &[u8],
    ) -> Result<Vec<u8>, OpenError> {
        open_with(
            self.account_key(),
            format!("tinbao/v1|account:{account_id}").as_bytes(),
            sealed,
        )
    }

    /// Seals data that belongs to no tip (a bot's dialog state, an inbound event waiting
    /// to be processed, an outgoing message, a provider token), bound to its kind and id
    /// so that it opens nowhere else.
    pub fn seal_record(&self, kind: &str, id: &str, plaintext: &[u8]) -> Vec<u8> {
        seal_with(
            self.account_key(),
            format!("tinbao/v1|{kind}:{id}").as_bytes(),
            plaintext,
        )
    }

    /// Opens a value sealed by [`KeyRing::seal_record`] for the same kind and id.
    pub fn open_record(&self, kind: &str, id: &str, sealed: &[u8]) -> Result<Vec<u8>, OpenError> {
        open_with(
            self.account_key(),
            format!("tinbao/v1|{kind}:{id}").as_bytes(),
            sealed,
        )
    }

    /// A keyed hash of a client address that changes every day and is never reversible
    /// (login throttling shared by every process through the database).
    pub fn daily_client_key(&self, day: i64, addr: &str) -> Vec<u8> {
        self.mac(&format!("client:{day}"), addr.as_bytes()).to_vec()
    }

    /// A keyed hash of a login name for throttling.
    pub fn account_key_for(&self, username: &str) -> Vec<u8> {
        self.mac("login-account", username.as_bytes()).to_vec()
    }

    /// A value that tells, at the next start, whether the MAC key is the same one.
    pub fn mac_check(&self) -> Vec<u8> {
        self.mac("check", b"tinbao mac check").to_vec()
    }
}

/// A keyed hash under a key that lives only in memory (for rate limiting client addresses).
pub struct EphemeralHasher {
    key: hmac::Key,
}

impl EphemeralHasher {
    /// A hasher under a fresh random key that is never stored.
    pub fn new() -> Self {
        let raw: [u8; 32] = random_bytes();
        EphemeralHasher {
            key: hmac::Key::new(hmac::HMAC_SHA256, &raw),
        }
    }

    /// The first 16 bytes of HMAC(key, value).
    pub fn hash(&self, value: &[u8]) -> [u8; 16] {
        let tag = hmac::sign(&self.key, value);
        let mut out = [0u8; 16];
        out.copy_from_slice(&tag.as_ref()[..16]);
        out
    }
}

impl Default for EphemeralHasher {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_field_opens_only_for_its_tip_and_field() {
        let ring = KeyRing::generate();
        let (a, wa) = ring.new_tip_key("tip-a");
        let (b, _) = ring.new_tip_key("tip-b");
        let sealed = a.seal_str("description", "hello");
        assert_eq!(a.open_str("description", &sealed).unwrap(), "hello");
        assert_eq!(a.open("place_details", &sealed), Err(OpenError));
        assert_eq!(b.open("description", &sealed), Err(OpenError));
        // The wrapped key itself is bound to its tip.
        assert!(ring.open_tip_key("tip-b", &wa).is_err());
        let a2 = ring.open_tip_key("tip-a", &wa).unwrap();
        assert_eq!(a2.open_str("description", &sealed).unwrap(), "hello");
    }

    #[test]
    fn tampered_or_short_ciphertext_fails() {
        let ring = KeyRing::generate();
        let (k, _) = ring.new_tip_key("t");
        let mut sealed = k.seal_str("f", "x");
        let last = sealed.len() - 1;
        sealed[last] ^= 1;
        assert!(k.open("f", &sealed).is_err());
        assert!(k.open("f", &[1, 2, 3]).is_err());
    }

    #[test]
    fn rotation_and_rewrap_keep_tips_readable() {
        let mut ring = KeyRing::generate();
        let (k, w) = ring.new_tip_key("t");
        let sealed = k.seal_str("f", "secret");
        let new_id = ring.rotate(&[]);
        assert_eq!(ring.current_id(), new_id);
        let w2 = ring.rewrap("t", &w).unwrap();
        assert_eq!(w2.key_id, new_id);
        ring.retire(&w.key_id).unwrap();
        let k2 = ring.open_tip_key("t", &w2).unwrap();
        assert_eq!(k2.open_str("f", &sealed).unwrap(), "secret");
        assert!(ring.open_tip_key("t", &w).is_err());
    }

    #[test]
    fn key_checks_detect_a_different_kek() {
        let a = KeyRing::generate();
        let b = KeyRing::generate();
        let check = a.key_check(&a.current_id()).unwrap();
        assert!(a.verify_key_check(&a.current_id(), &check));
        assert!(!b.verify_key_check(&a.current_id(), &check));
    }
}
