//! Campaign broadcasts: residents subscribe to a village's messages over a chat app, SMS
//! or email; village heads and commune chiefs write a broadcast, someone else in the
//! commune approves it, and at its time the runner fans it out into the durable outbox,
//! where the dispatcher sends each message within its channel's rate (follow-ups to
//! tipsters first). Village heads see counts, never an address, never a tip.

mod outbox;
pub mod rules;

use crate::accounts::{Account, Role};
use crate::channels::sms::{prepare_text, segments};
use crate::channels::{Outgoing, Transport};
use crate::clock::now_ms;
use crate::config::BroadcastConfig;
use crate::crypto::KeyRing;
use crate::store::{
    BroadcastRow, BroadcastStatus, CountRow, NewBroadcast, NewSubscriber, OutboxStatus, ResultRow,
    Store, SubscriberRow,
};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

/// Longest broadcast text, in characters (ten SMS segments of UCS-2 is 670).
pub const MAX_TEXT_CHARS: usize = 1_000;
/// Longest title.
pub const MAX_TITLE_CHARS: usize = 120;
/// Languages a broadcast may be written in (the first is required).
pub const LANGUAGES: &[&str] = &["vi", "en"];
/// Every channel a resident may subscribe on.
pub const SUBSCRIBE_TRANSPORTS: &[Transport] = &[
    Transport::ZALO,
    Transport::TELEGRAM,
    Transport::TWILIO,
    Transport::ANDROID,
    Transport::EMAIL,
];

pub use crate::delivery::{parse_hhmm, QuietHours};

/// What a broadcast is made of, as its author wrote it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Draft {
    pub title: String,
    /// Language → text; Vietnamese is required.
    pub texts: BTreeMap<String, String>,
    pub transports: Vec<Transport>,
    pub villages: Vec<i64>,
    /// When to send (ms since the epoch); now when `None`.
    pub send_at: Option<i64>,
}

/// Why a draft cannot be sent; each is a locale key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DraftError {
    #[error("broadcast.error.title")]
    Title,
    #[error("broadcast.error.text")]
    NoText,
    #[error("broadcast.error.too_long")]
    TooLong,
    #[error("broadcast.error.channel")]
    NoChannel,
    #[error("broadcast.error.village")]
    NoVillage,
    #[error("broadcast.error.not_your_village")]
    NotYourVillage,
    #[error("broadcast.error.past")]
    InThePast,
}

impl DraftError {
    /// The locale key of the message.
    pub fn key(self) -> &'static str {
        match self {
            DraftError::Title => "broadcast.error.title",
            DraftError::NoText => "broadcast.error.text",
            DraftError::TooLong => "broadcast.error.too_long",
            DraftError::NoChannel => "broadcast.error.channel",
            DraftError::NoVillage => "broadcast.error.village",
            DraftError::NotYourVillage => "broadcast.error.not_your_village",
            DraftError::InThePast => "broadcast.error.past",
        }
    }
}

/// Why an action on a broadcast was refused.
#[derive(Debug, thiserror::Error)]
pub enum BroadcastError {
    #[error("{0:?}")]
    Invalid(Vec<DraftError>),
    /// Not this account's broadcast, village or role: a 403.
    #[error("not allowed")]
    Denied,
    #[error("no such broadcast")]
    NotFound,
    /// The broadcast is not in a state for this (already approved, finished…).
    #[error("not in a state for this")]
    Conflict,
    #[error("database error: {0}")]
    Store(#[from] crate::store::StoreError),
}

/// SMS cost of one text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextCost {
    pub language: String,
    pub chars: usize,
    pub segments: usize,
    pub ucs2: bool,
}

/// What a draft would do: recipients per channel, and what its texts cost in SMS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Preview {
    /// Active subscribers per transport in the chosen villages (all transports, so the
    /// author sees what a channel left out would reach).
    pub recipients: Vec<(Transport, i64)>,
    pub costs: Vec<TextCost>,
    /// SMS messages the broadcast would send on the chosen SMS transports (subscribers ×
    /// segments of their language's text, Vietnamese where they have none).
    pub sms_segments: i64,
}

/// Live progress of a broadcast.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Progress {
    pub status: String,
    pub total: i64,
    pub queued: i64,
    pub sent: i64,
    pub delivered: i64,
    pub failed: i64,
    pub opted_out: i64,
    pub cancelled: i64,
    /// Whether every recipient has been put in the outbox.
    pub fanned_out: bool,
    /// Estimated finish, ms since the epoch, while sending.
    pub eta: Option<i64>,
    /// Per transport: (transport, queued, sent, delivered, failed, opted out, cancelled).
    pub by_transport: Vec<(String, [i64; 6])>,
}

impl Progress {
    /// Settled messages as a share of all, 0–100.
    pub fn percent(&self) -> i64 {
        if self.total <= 0 {
            return if self.fanned_out { 100 } else { 0 };
        }
        ((self.total - self.queued) * 100 / self.total).clamp(0, 100)
    }
}

/// How a subscription request ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subscribed {
    /// Active now.
    Active { id: i64 },
    /// An email address waiting for its confirmation: a link was sent, now or within
    /// [`PENDING_EMAIL_MS`] (never twice in that time).
    Pending { id: i64 },
    /// Too many email subscriptions are waiting for confirmation (in the village or in
    /// all): nothing was stored or sent.
    Busy,
}

/// How long an email subscription waits for its confirmation. Within it, asking again
/// sends no second email; after it the pending row is deleted and the link lapses.
pub const PENDING_EMAIL_MS: i64 = 24 * 3600 * 1000;
/// Most email subscriptions waiting for confirmation in one village.
pub const MAX_PENDING_PER_VILLAGE: i64 = 100;
/// Most email subscriptions waiting for confirmation in all.
pub const MAX_PENDING_TOTAL: i64 = 5_000;

/// Chunks of a fan-out written at once on PostgreSQL, each on a connection (a core) of
/// its own: a million recipients in about half the time of one at a time.
const FANOUT_LANES: usize = 2;

/// The broadcast service, shared by the console, the bots, the web pages and the runner.
#[derive(Clone)]
pub struct Broadcasts {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    keys: Arc<KeyRing>,
    config: BroadcastConfig,
    quiet: QuietHours,
    public_url: String,
    /// Wakes the outbox dispatcher when messages are queued.
    wake_outbox: Arc<Notify>,
    /// Wakes the runner when a broadcast becomes due.
    wake_runner: Notify,
}

impl Broadcasts {
    /// Builds the service.
    pub fn new(
        store: Store,
        keys: Arc<KeyRing>,
        config: &BroadcastConfig,
        public_url: &str,
        wake_outbox: Arc<Notify>,
    ) -> Broadcasts {
        Broadcasts {
            inner: Arc::new(Inner {
                store,
                keys,
                quiet: QuietHours::from_config(config),
                config: config.clone(),
                public_url: public_url.trim_end_matches('/').to_owned(),
                wake_outbox,
                wake_runner: Notify::new(),
            }),
        }
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// The quiet hours of bulk SMS.
    pub fn quiet_hours(&self) -> QuietHours {
        self.inner.quiet
    }

    /// The configuration.
    pub fn config(&self) -> &BroadcastConfig {
        &self.inner.config
    }

    // ----- subscriptions ------------------------------------------------------------

    /// A link token for a subscription (`confirm` or `unsubscribe`): a keyed hash, so
    /// nothing is stored and nobody can forge one for another subscription.
    pub fn link_token(&self, purpose: &str, id: i64) -> String {
        link_token(&self.inner.keys, purpose, id)
    }

    /// Whether `token` is the right one for this subscription and purpose.
    pub fn check_token(&self, purpose: &str, id: i64, token: &str) -> bool {
        crate::crypto::constant_eq(self.link_token(purpose, id).as_bytes(), token.as_bytes())
    }

    /// The confirmation page of an email subscription.
    pub fn confirm_url(&self, id: i64) -> String {
        format!(
            "{}/subscribe/confirm?s={id}&t={}",
            self.inner.public_url,
            self.link_token("confirm", id)
        )
    }

    /// The subscriber pseudonym of an address on a transport (emails compared
    /// lower-case): never equal to the same address's sender pseudonym in tips and chats.
    pub fn pseudonym(&self, transport: Transport, address: &str) -> Vec<u8> {
        let normal = normalise_address(transport, address);
        self.inner
            .keys
            .subscriber_pseudonym(transport.as_str(), &normal)
    }

    /// Subscribes `address` to a village. Chat and SMS subscriptions are active at once
    /// (the person wrote from that address); an email address must confirm a link first,
    /// which is queued here.
    pub async fn subscribe(
        &self,
        transport: Transport,
        address: &str,
        village_id: i64,
        language: &str,
    ) -> Result<Subscribed, BroadcastError> {
        let store = &self.inner.store;
        let Some(village) = store.village(village_id).await? else {
            return Err(BroadcastError::NotFound);
        };
        let language = if LANGUAGES.contains(&language) {
            language
        } else {
            LANGUAGES[0]
        };
        let mut sub = self.new_subscriber(
            transport,
            address,
            village_id,
            village.commune_code,
            language,
        );
        if transport != Transport::EMAIL {
            let (id, _) = store.upsert_subscriber(&sub).await?;
            return Ok(Subscribed::Active { id });
        }
        // Email: one confirmation per pending window, and a bound on what waits.
        store
            .purge_pending_subscribers(now_ms() - PENDING_EMAIL_MS)
            .await?;
        if let Some((id, status)) = store
            .subscriber_status(village_id, transport.as_str(), &sub.sender)
            .await?
        {
            match status.as_str() {
                "active" => return Ok(Subscribed::Active { id }),
                "pending" => return Ok(Subscribed::Pending { id }),
                _ => {}
            }
        }
        let (in_village, in_all) = store.pending_subscriber_counts(village_id).await?;
        if in_village >= MAX_PENDING_PER_VILLAGE || in_all >= MAX_PENDING_TOTAL {
            return Ok(Subscribed::Busy);
        }
        sub.status = "pending";
        let Some(id) = store.claim_pending_subscriber(&sub).await? else {
            // Another request made it pending (or active) meanwhile; it sent the mail.
            return Ok(
                match store
                    .subscriber_status(village_id, transport.as_str(), &sub.sender)
                    .await?
                {
                    Some((id, s)) if s == "active" => Subscribed::Active { id },
                    Some((id, _)) => Subscribed::Pending { id },
                    None => Subscribed::Busy,
                },
            );
        };
        let texts = crate::i18n::locales().texts(language);
        let mail = Outgoing::new(
            normalise_address(transport, address),
            format!(
                "{}\n\n{}\n\n{}",
                texts.fill("subscribe.email_confirm", &[("village", &village.name)]),
                self.confirm_url(id),
                texts.get("subscribe.email_ignore"),
            ),
        )
        .with_subject(texts.get("subscribe.email_subject"));
        let row =
            crate::delivery::outbox_row_for(&self.inner.keys, Transport::EMAIL, None, None, &mail);
        store.enqueue(&[row]).await?;
        self.inner.wake_outbox.notify_one();
        Ok(Subscribed::Pending { id })
    }

    /// A subscription ready to store (imports, benchmarks): pseudonym and sealed address.
    pub fn new_subscriber(
        &self,
        transport: Transport,
        address: &str,
        village_id: i64,
        commune_code: i64,
        language: &str,
    ) -> NewSubscriber {
        let sender = self.pseudonym(transport, address);
        let address = normalise_address(transport, address);
        NewSubscriber {
            village_id,
            commune_code,
            transport: transport.as_str().to_owned(),
            address: self.seal_address(&sender, &address),
            sender,
            language: language.to_owned(),
            status: "active",
            now: now_ms(),
        }
    }

    fn seal_address(&self, sender: &[u8], address: &str) -> Vec<u8> {
        self.inner
            .keys
            .seal_record("subscriber", &hex(sender), address.as_bytes())
    }

    /// Villages a resident means by `query`: a village code from a poster ("12"), or a
    /// village name and a commune name separated by a comma ("Thôn 3, hoang van thu"),
    /// accents optional. With their commune's name.
    pub async fn find_villages(
        &self,
        geo: &crate::geo::Geo,
        query: &str,
    ) -> Result<Vec<(crate::store::Village, String)>, BroadcastError> {
        let store = &self.inner.store;
        let commune_name = |code: i64| {
            geo.commune(code)
                .map(|c| c.name.clone())
                .unwrap_or_default()
        };
        let q = query.trim();
        let digits: String = q.chars().filter(char::is_ascii_digit).collect();
        if !digits.is_empty() && digits.len() == q.chars().filter(|c| !c.is_whitespace()).count() {
            let Ok(id) = digits.parse::<i64>() else {
                return Ok(Vec::new());
            };
            return Ok(store
                .village(id)
                .await?
                .map(|v| {
                    let name = commune_name(v.commune_code);
                    (v, name)
                })
                .into_iter()
                .collect());
        }
        let Some((village, commune)) = q.split_once(',') else {
            return Ok(Vec::new());
        };
        let wanted = crate::geo::fold(village);
        if wanted.is_empty() {
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        for c in geo.search_communes(commune, 5) {
            for v in store.villages(c.code).await? {
                if crate::geo::fold(&v.name) == wanted {
                    out.push((v, c.name.clone()));
                }
            }
        }
        Ok(out)
    }

    /// Confirms an email subscription from its link. `false` for a wrong or used link.
    pub async fn confirm(&self, id: i64, token: &str) -> Result<bool, BroadcastError> {
        if !self.check_token("confirm", id, token) {
            return Ok(false);
        }
        Ok(self.inner.store.confirm_subscriber(id, now_ms()).await?)
    }

    /// Ends one subscription from its unsubscribe link. `false` for a wrong link; an
    /// already-ended subscription is `true` (the link still works).
    pub async fn unsubscribe(&self, id: i64, token: &str) -> Result<bool, BroadcastError> {
        if !self.check_token("unsubscribe", id, token) {
            return Ok(false);
        }
        self.inner.store.opt_out_subscriber(id).await?;
        Ok(true)
    }

    /// Ends every subscription of an address on a transport (STOP, HUY, a bot command,
    /// a block or an unfollow). Returns how many ended.
    pub async fn opt_out(
        &self,
        transport: Transport,
        address: &str,
    ) -> Result<u64, BroadcastError> {
        let subscriber = self.pseudonym(transport, address);
        Ok(self.inner.store.opt_out_sender(&subscriber).await?)
    }

    /// The villages an address is subscribed to on a transport.
    pub async fn subscriptions(
        &self,
        transport: Transport,
        address: &str,
    ) -> Result<Vec<SubscriberRow>, BroadcastError> {
        let sender = self.pseudonym(transport, address);
        Ok(self.inner.store.subscriptions_of(&sender).await?)
    }

    // ----- writing and approving ----------------------------------------------------------

    /// Checks a draft against the author's scope; every problem at once.
    pub async fn validate(
        &self,
        author: &Account,
        d: &Draft,
    ) -> Result<Vec<DraftError>, BroadcastError> {
        let mut errors = Vec::new();
        let title = d.title.trim();
        if title.is_empty() || title.chars().count() > MAX_TITLE_CHARS {
            errors.push(DraftError::Title);
        }
        if d.texts
            .get(LANGUAGES[0])
            .is_none_or(|t| t.trim().is_empty())
        {
            errors.push(DraftError::NoText);
        }
        if d.texts.values().any(|t| t.chars().count() > MAX_TEXT_CHARS) {
            errors.push(DraftError::TooLong);
        }
        if d.transports.is_empty() {
            errors.push(DraftError::NoChannel);
        }
        if d.villages.is_empty() {
            errors.push(DraftError::NoVillage);
        } else if !self.may_reach(author, &d.villages).await? {
            errors.push(DraftError::NotYourVillage);
        }
        if d.send_at.is_some_and(|t| t < now_ms() - 60_000) {
            errors.push(DraftError::InThePast);
        }
        Ok(errors)
    }

    /// Whether the account may send to every one of these villages: a village head to
    /// its own, a chief to any of its commune's.
    pub async fn may_reach(&self, a: &Account, villages: &[i64]) -> Result<bool, BroadcastError> {
        match a.role {
            Role::VillageHead => Ok(a.village_id.is_some()
                && villages.iter().all(|v| Some(*v) == a.village_id)
                && a.commune_code.is_some()),
            Role::Chief => {
                let Some(commune) = a.commune_code else {
                    return Ok(false);
                };
                let own: Vec<i64> = self
                    .inner
                    .store
                    .villages(commune)
                    .await?
                    .iter()
                    .map(|v| v.id)
                    .collect();
                Ok(villages.iter().all(|v| own.contains(v)))
            }
            _ => Ok(false),
        }
    }

    /// What a draft would reach and cost.
    pub async fn preview(&self, d: &Draft) -> Result<Preview, BroadcastError> {
        let counts = self.inner.store.subscriber_counts(&d.villages).await?;
        let mut recipients: Vec<(Transport, i64)> =
            SUBSCRIBE_TRANSPORTS.iter().map(|t| (*t, 0)).collect();
        for (_, t, n) in &counts {
            if let Some(r) = recipients.iter_mut().find(|(x, _)| x.as_str() == t) {
                r.1 += n;
            }
        }
        let strip = false;
        let costs: Vec<TextCost> = d
            .texts
            .iter()
            .filter(|(_, t)| !t.trim().is_empty())
            .map(|(lang, t)| {
                let s = segments(&prepare_text(t, strip));
                TextCost {
                    language: lang.clone(),
                    chars: s.chars,
                    segments: s.segments,
                    ucs2: s.ucs2,
                }
            })
            .collect();
        // Subscribers' languages are not counted per language here: the Vietnamese
        // text's cost is the estimate (most subscribers read it).
        let per = costs
            .iter()
            .find(|c| c.language == LANGUAGES[0])
            .map_or(0, |c| c.segments as i64);
        let sms_segments = recipients
            .iter()
            .filter(|(t, _)| t.is_sms() && d.transports.contains(t))
            .map(|(_, n)| n * per)
            .sum();
        Ok(Preview {
            recipients,
            costs,
            sms_segments,
        })
    }

    /// Creates a broadcast: waiting for approval, or scheduled when the commune turned
    /// approval off.
    pub async fn create(
        &self,
        author: &Account,
        d: &Draft,
    ) -> Result<BroadcastRow, BroadcastError> {
        let errors = self.validate(author, d).await?;
        if !errors.is_empty() {
            return Err(BroadcastError::Invalid(errors));
        }
        let commune = author.commune_code.ok_or(BroadcastError::Denied)?;
        let store = &self.inner.store;
        let approval = store.broadcast_approval(commune).await?;
        let now = now_ms();
        let texts: BTreeMap<&String, String> = d
            .texts
            .iter()
            .filter(|(_, t)| !t.trim().is_empty())
            .map(|(l, t)| (l, t.trim().to_owned()))
            .collect();
        let id = uuid::Uuid::new_v4().simple().to_string()[..16].to_owned();
        let mut transports: Vec<&str> = d.transports.iter().map(|t| t.as_str()).collect();
        transports.sort_unstable();
        transports.dedup();
        let mut villages = d.villages.clone();
        villages.sort_unstable();
        villages.dedup();
        store
            .insert_broadcast(&NewBroadcast {
                id: id.clone(),
                commune_code: commune,
                author_id: author.id.clone(),
                title: d.title.trim().to_owned(),
                texts: serde_json::to_string(&texts).unwrap_or_else(|_| "{}".into()),
                transports: transports.join(","),
                villages: villages
                    .iter()
                    .map(i64::to_string)
                    .collect::<Vec<_>>()
                    .join(","),
                status: if approval {
                    BroadcastStatus::Pending
                } else {
                    BroadcastStatus::Scheduled
                },
                send_at: d.send_at.unwrap_or(now).max(now),
                approved_by: None,
                created_at: now,
            })
            .await?;
        self.inner.wake_runner.notify_one();
        store.broadcast(&id).await?.ok_or(BroadcastError::NotFound)
    }

    /// Loads a broadcast the account may see: its commune's, and for a village head only
    /// those to its village; another's is `Denied`.
    pub async fn visible(&self, a: &Account, id: &str) -> Result<BroadcastRow, BroadcastError> {
        let b = self
            .inner
            .store
            .broadcast(id)
            .await?
            .ok_or(BroadcastError::NotFound)?;
        if rules::may_see(a, &b) {
            Ok(b)
        } else {
            Err(BroadcastError::Denied)
        }
    }

    /// The broadcasts an account may see, newest first.
    pub async fn list(&self, a: &Account) -> Result<Vec<BroadcastRow>, BroadcastError> {
        let Some(commune) = a.commune_code else {
            return Ok(Vec::new());
        };
        let rows = self.inner.store.broadcasts_of_commune(commune, 200).await?;
        Ok(rows.into_iter().filter(|b| rules::may_see(a, b)).collect())
    }

    /// Approves a waiting broadcast: an officer or the chief of its commune, never its
    /// author.
    pub async fn approve(&self, a: &Account, id: &str) -> Result<(), BroadcastError> {
        let b = self.visible(a, id).await?;
        if !rules::is_approver_of(a, &b) {
            return Err(BroadcastError::Denied);
        }
        if !self
            .inner
            .store
            .approve_broadcast(id, &a.id, now_ms())
            .await?
        {
            return Err(BroadcastError::Conflict);
        }
        self.inner.wake_runner.notify_one();
        Ok(())
    }

    /// Cancels a broadcast until it finishes: its author, or an officer or chief of its
    /// commune. What was sent is kept in its results.
    pub async fn cancel(&self, a: &Account, id: &str) -> Result<(), BroadcastError> {
        let b = self.visible(a, id).await?;
        if !rules::is_canceller_of(a, &b) {
            return Err(BroadcastError::Denied);
        }
        let store = &self.inner.store;
        if !store.cancel_broadcast(id, &a.id, now_ms()).await? {
            return Err(BroadcastError::Conflict);
        }
        store.keep_cancelled_results(id).await?;
        Ok(())
    }

    /// Live counts, with an estimated finish.
    pub async fn progress(&self, b: &BroadcastRow) -> Result<Progress, BroadcastError> {
        let counts = self.inner.store.broadcast_counts(&b.id).await?;
        Ok(progress_of(b, &counts, now_ms()))
    }

    /// The kept results of a finished broadcast, per village and transport.
    pub async fn results(&self, id: &str) -> Result<Vec<ResultRow>, BroadcastError> {
        Ok(self.inner.store.broadcast_results(id).await?)
    }

    // ----- the runner -------------------------------------------------------------------

    /// Starts the runner: due broadcasts start, fan out, and finish.
    pub fn spawn_runner(&self) {
        let me = self.clone();
        tokio::spawn(async move {
            loop {
                if me.inner.store.is_closed() {
                    break;
                }
                if let Err(e) = me.run_once().await {
                    if me.inner.store.is_closed() {
                        break;
                    }
                    tracing::warn!(error = %e, "broadcast runner round failed");
                }
                let _ = tokio::time::timeout(
                    Duration::from_millis(500),
                    me.inner.wake_runner.notified(),
                )
                .await;
            }
        });
    }

    /// One round of the runner (tests call it directly).
    pub async fn run_once(&self) -> Result<(), BroadcastError> {
        let store = &self.inner.store;
        let now = now_ms();
        for b in store.broadcasts_to_run(now).await? {
            match b.status {
                BroadcastStatus::Scheduled if store.start_broadcast(&b.id, now).await? => {
                    tracing::info!(broadcast = %b.id, "broadcast started");
                    self.fan_out(&b.id).await?;
                }
                BroadcastStatus::Sending if b.fanout_done == 0 => {
                    self.fan_out(&b.id).await?;
                }
                BroadcastStatus::Sending if store.finish_broadcast(&b.id, now_ms()).await? => {
                    tracing::info!(broadcast = %b.id, "broadcast finished");
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Puts every recipient of a sending broadcast in the outbox, chunk by chunk (on
    /// PostgreSQL [`FANOUT_LANES`] chunks at once), under
    /// a lease so that one process does it; resumes where a killed process stopped.
    pub async fn fan_out(&self, id: &str) -> Result<u64, BroadcastError> {
        const LEASE_MS: i64 = 15_000;
        let store = &self.inner.store;
        let now = now_ms();
        let Some(mut b) = store.lease_fanout(id, now, now + LEASE_MS).await? else {
            return Ok(0);
        };
        let chunk = self.inner.config.fanout_chunk.max(100);
        // Resumed after a process died mid-way: rows it wrote may not have been counted.
        let mut recount = b.fanout_village != 0 || b.fanout_cursor != 0;
        let mut total = 0;
        loop {
            let now = now_ms();
            let (row, step) = store
                .fanout_chunks(&b, chunk, FANOUT_LANES, now, now + LEASE_MS)
                .await?;
            total += step.inserted;
            recount |= step.skipped;
            if step.inserted > 0 {
                self.inner.wake_outbox.notify_one();
            }
            if step.done && recount {
                store.recount_queued(id).await?;
            }
            if step.done || row.status != BroadcastStatus::Sending {
                break;
            }
            b = row;
        }
        tracing::info!(broadcast = %id, queued = total, "broadcast fanned out");
        Ok(total)
    }
}

/// Counts into progress; `now` for the estimate.
pub fn progress_of(b: &BroadcastRow, counts: &[CountRow], now: i64) -> Progress {
    let mut p = Progress {
        status: b.status.as_str().to_owned(),
        fanned_out: b.fanout_done != 0,
        ..Progress::default()
    };
    for c in counts {
        let slot = match OutboxStatus::parse(&c.status) {
            Some(OutboxStatus::Queued) => 0,
            Some(OutboxStatus::Sent) => 1,
            Some(OutboxStatus::Delivered) => 2,
            Some(OutboxStatus::Failed) => 3,
            Some(OutboxStatus::OptedOut) => 4,
            Some(OutboxStatus::Cancelled) => 5,
            None => continue,
        };
        let entry = match p
            .by_transport
            .iter_mut()
            .position(|(t, _)| *t == c.transport)
        {
            Some(i) => &mut p.by_transport[i].1,
            None => {
                p.by_transport.push((c.transport.clone(), [0; 6]));
                &mut p.by_transport.last_mut().expect("pushed").1
            }
        };
        entry[slot] += c.count;
        match slot {
            0 => p.queued += c.count,
            1 => p.sent += c.count,
            2 => p.delivered += c.count,
            3 => p.failed += c.count,
            4 => p.opted_out += c.count,
            _ => p.cancelled += c.count,
        }
    }
    p.total = p.queued + p.sent + p.failed + p.opted_out + p.cancelled;
    if b.status == BroadcastStatus::Sending && p.queued > 0 {
        if let Some(started) = b.started_at {
            let done = p.total - p.queued;
            let elapsed = (now - started).max(1);
            if done > 0 {
                p.eta = Some(now + elapsed * p.queued / done);
            }
        }
    }
    p
}

/// The text a subscriber gets: theirs, or Vietnamese.
pub fn text_for<'a>(texts: &'a BTreeMap<String, String>, language: &str) -> Option<&'a str> {
    texts
        .get(language)
        .or_else(|| texts.get(LANGUAGES[0]))
        .or_else(|| texts.values().next())
        .map(String::as_str)
}

/// Addresses compared as the provider means them: emails lower-case, phone numbers
/// without spaces.
pub fn normalise_address(transport: Transport, address: &str) -> String {
    let a = address.trim();
    match transport {
        Transport::EMAIL => a.to_lowercase(),
        Transport::TWILIO | Transport::ANDROID => {
            a.chars().filter(|c| !c.is_whitespace()).collect()
        }
        _ => a.to_owned(),
    }
}

/// A subscription's link token (`confirm` or `unsubscribe`): a keyed hash of its id.
pub fn link_token(keys: &KeyRing, purpose: &str, id: i64) -> String {
    let mac = keys.pseudonym("subscription-link", &format!("{purpose}:{id}"));
    hex(&mac[..16.min(mac.len())])
}

/// The unsubscribe page of a subscription, under `public_url` (no trailing slash).
pub fn unsubscribe_url(public_url: &str, keys: &KeyRing, id: i64) -> String {
    format!(
        "{public_url}/subscribe/stop?s={id}&t={}",
        link_token(keys, "unsubscribe", id)
    )
}

/// Where the meta table records that subscribers' pseudonyms were re-keyed.
const REKEY_STEP: &str = "subscriber_pseudonyms_v2";

/// Re-keys, once per database, the subscriptions stored before subscriber pseudonyms had
/// a key of their own (they equalled the sender pseudonyms of tips and chats): each
/// stored pseudonym `p` becomes `subscriber_pseudonym_of(p)`, exactly what a new
/// subscription of that address now gets, and its sealed address (bound to the
/// pseudonym) is sealed again under the new one. Idempotent; run at start-up before
/// serving. Returns how many rows changed (0 when it had run already).
pub async fn rekey_subscribers(store: &Store, keys: &KeyRing) -> Result<u64, BroadcastError> {
    let done = store
        .rekey_subscribers(REKEY_STEP, |old, address| {
            let new = keys.subscriber_pseudonym_of(old);
            let address = address
                .and_then(|a| keys.open_record("subscriber", &hex(old), a).ok())
                .map(|plain| keys.seal_record("subscriber", &hex(&new), &plain));
            (new, address)
        })
        .await?;
    if let Some(n) = done {
        tracing::info!(
            subscribers = n,
            "subscriber pseudonyms moved to their own key"
        );
    }
    Ok(done.unwrap_or(0))
}

/// Opens a subscriber's sealed address (bound to its pseudonym).
pub fn open_subscriber_address(keys: &KeyRing, row: &SubscriberRow) -> Option<String> {
    let sealed = row.address.as_ref()?;
    let bytes = keys
        .open_record("subscriber", &hex(&row.sender), sealed)
        .ok()?;
    String::from_utf8(bytes).ok()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_falls_back_to_vietnamese() {
        let mut t = BTreeMap::new();
        t.insert("vi".to_string(), "Tháng hành động".to_string());
        t.insert("en".to_string(), "Action month".to_string());
        assert_eq!(text_for(&t, "en"), Some("Action month"));
        assert_eq!(text_for(&t, "fr"), Some("Tháng hành động"));
    }

    #[test]
    fn progress_counts_and_estimates() {
        let b = BroadcastRow {
            id: "b".into(),
            commune_code: 1,
            author_id: "a".into(),
            title: "t".into(),
            texts: "{}".into(),
            transports: "telegram".into(),
            villages: "1".into(),
            status: BroadcastStatus::Sending,
            send_at: 0,
            created_at: 0,
            approved_by: None,
            approved_at: None,
            started_at: Some(1_000),
            fanout_village: 1,
            fanout_cursor: 0,
            fanout_done: 1,
            queued: 100,
            finished_at: None,
            cancelled_by: None,
            cancelled_at: None,
        };
        let c = |s: &str, n| CountRow {
            transport: "telegram".into(),
            status: s.into(),
            count: n,
        };
        let p = progress_of(
            &b,
            &[
                c("queued", 50),
                c("sent", 40),
                c("delivered", 10),
                c("failed", 10),
            ],
            11_000,
        );
        assert_eq!(
            (p.total, p.queued, p.sent, p.delivered, p.failed),
            (100, 50, 40, 10, 10)
        );
        assert_eq!(p.percent(), 50);
        // 50 settled in 10 s: 50 more take 10 s.
        assert_eq!(p.eta, Some(21_000));
    }
}
