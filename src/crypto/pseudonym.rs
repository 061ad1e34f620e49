//! Keyed pseudonyms, one per purpose, so that two tables never share a value for one
//! person. A chat id or phone number becomes:
//!
//! - its **sender** pseudonym (tips' reply addresses, conversations, the inbox): the keyed
//!   HMAC under the MAC key that tinbao has always used, so stored tips and conversations
//!   keep matching;
//! - its **subscriber** pseudonym (broadcast subscriptions): the sender pseudonym signed
//!   again under a key of its own, derived from the MAC key with HKDF. A database dump
//!   alone cannot join `tip_contacts.sender` to `subscribers.sender`; only the key file
//!   can. Being a function of the sender pseudonym, it can be computed where only that is
//!   known (a STOP in a conversation, a provider's opt-out report), and existing rows could
//!   be re-keyed once at start-up without any clear address (see `broadcast::rekey`).
//!
//! Anyone holding the key file can still enumerate a phone number space (about 10⁹
//! numbers) against either pseudonym: the README's anonymity section says so.

use super::KeyRing;
use ring::{hkdf, hmac};

/// What a pseudonym is for, beyond linking a sender's messages (which keeps the MAC key's
/// own pseudonym).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Purpose {
    /// Broadcast subscriptions.
    Subscriber,
}

impl Purpose {
    fn info(self) -> &'static [u8] {
        match self {
            Purpose::Subscriber => b"tinbao/v1|pseudonym key|subscriber",
        }
    }
}

impl KeyRing {
    /// The HMAC key of one purpose: HKDF-SHA256 over a secret the MAC key gives, with the
    /// purpose as its info, so no purpose's key tells anything about another's.
    fn purpose_key(&self, purpose: Purpose) -> hmac::Key {
        let ikm = self.mac("pseudonym-keys", b"");
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, b"tinbao/v1|pseudonyms").extract(&ikm);
        let info = [purpose.info()];
        let okm = prk
            .expand(&info, hmac::HMAC_SHA256)
            .expect("HKDF output of one HMAC key");
        hmac::Key::from(okm)
    }

    /// The pseudonym that links one sender's messages, conversation and open tips on a
    /// transport (`address`: a chat id or phone number as the provider gives it).
    pub fn sender_pseudonym(&self, transport: &str, address: &str) -> Vec<u8> {
        self.pseudonym(transport, address)
    }

    /// The pseudonym of a broadcast subscription's address on a transport.
    pub fn subscriber_pseudonym(&self, transport: &str, address: &str) -> Vec<u8> {
        self.subscriber_pseudonym_of(&self.sender_pseudonym(transport, address))
    }

    /// The subscriber pseudonym of the person whose sender pseudonym is `sender`.
    pub fn subscriber_pseudonym_of(&self, sender: &[u8]) -> Vec<u8> {
        hmac::sign(&self.purpose_key(Purpose::Subscriber), sender)
            .as_ref()
            .to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_address_has_unrelated_pseudonyms_per_purpose() {
        let ring = KeyRing::generate();
        let sender = ring.sender_pseudonym("twilio", "+84912345678");
        let sub = ring.subscriber_pseudonym("twilio", "+84912345678");
        assert_eq!(sender.len(), 32);
        assert_eq!(sub.len(), 32);
        assert_ne!(sender, sub);
        // Stable, and computable from the sender pseudonym alone.
        assert_eq!(sub, ring.subscriber_pseudonym_of(&sender));
        assert_eq!(sub, ring.subscriber_pseudonym("twilio", "+84912345678"));
        // Other addresses, transports and key files give other values.
        assert_ne!(sub, ring.subscriber_pseudonym("twilio", "+84912345679"));
        assert_ne!(sub, ring.subscriber_pseudonym("android", "+84912345678"));
        let other = KeyRing::generate();
        assert_ne!(sub, other.subscriber_pseudonym("twilio", "+84912345678"));
        // The sender pseudonym is the one stored tips and conversations already hold.
        assert_eq!(sender, ring.pseudonym("twilio", "+84912345678"));
    }
}
