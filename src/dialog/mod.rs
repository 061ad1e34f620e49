//! Chat and SMS conversations. Webhooks and the Telegram poller ([`telegram_poll`]) hand normalised
//! [`Inbound`] events to [`Chat::accept`], which seals them into the durable inbox (a
//! provider's retry is recognised and dropped) and answers only once they are on disk.
//! A processor then runs each event through the engine of `bots/` (chat) or the one-SMS
//! rules (SMS) and the intake service, and queues the answers in the outbox.

pub mod bot;
pub mod engine;
mod mms;
pub mod replay;
pub mod telegram_poll;

use crate::channels::{Inbound, InboundKind, Outgoing, PhotoRef, Transport};
use crate::clock::now_ms;
use crate::config::SmsNumber;
use crate::crypto::{KeyRing, Receipt};
use crate::delivery::{Outbox, Providers};
use crate::geo::fold;
use crate::intake::{ChatOrigin, Intake, IntakeError, TipInput, MAX_TEXT};
use crate::store::{InboxRow, InboxWriter, NewInboxEvent, Store, TipContactRow};
use crate::tips::Category;
use bot::Bot;
use engine::{Action, Context, DialogState, Draft};
use futures_util::future::BoxFuture;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

/// How long a provider's message id is remembered against retries.
const SEEN_ID_MS: i64 = 48 * 3600 * 1000;
/// Where a provider has no message id, the same content from the same sender within this
/// long is a retry.
const SEEN_CONTENT_MS: i64 = 5 * 60 * 1000;
/// How long a claimed event stays with one processor.
const LEASE_MS: i64 = 60_000;
/// Arrivals sorted into the inbox a round at most: a large batch places many events on
/// each page of the random-keyed indexes (issue 15); during a flood, a round comes every
/// quarter of a second at most.
const SORT_BATCH: i64 = 1024;

/// Fetches a photo a provider keeps (Telegram getFile, Zalo image URL), by the transport
/// the photo came over.
pub trait PhotoSource: Send + Sync {
    fn fetch<'a>(
        &'a self,
        transport: Transport,
        photo: &'a PhotoRef,
    ) -> BoxFuture<'a, Result<Vec<u8>, String>>;
}

/// Photos fetched from the provider that holds them.
impl PhotoSource for Providers {
    fn fetch<'a>(
        &'a self,
        transport: Transport,
        photo: &'a PhotoRef,
    ) -> BoxFuture<'a, Result<Vec<u8>, String>> {
        Box::pin(self.fetch_photo(transport, photo))
    }
}

/// Limits receipt checks per sender (by pseudonym); `Err(minutes)` when the sender must
/// wait. The state's in-memory limiter implements it; the app attaches it.
pub trait SenderLimit: Send + Sync {
    fn check_receipt(&self, sender: &[u8]) -> Result<(), u64>;
}

/// Something the processor must know went wrong; the event is retried later.
#[derive(Debug, thiserror::Error)]
pub enum ChatError {
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error("stored data could not be opened")]
    Sealed,
    #[error(transparent)]
    Intake(#[from] IntakeError),
    #[error(transparent)]
    Broadcast(#[from] crate::broadcast::BroadcastError),
    #[error(transparent)]
    Delivery(#[from] crate::delivery::DeliveryError),
    /// Another process saved the conversation first; the event is processed again.
    #[error("the conversation changed meanwhile")]
    Raced,
}

/// The chat service shared by every chat and SMS channel. Cheap to clone.
#[derive(Clone)]
pub struct Chat {
    inner: Arc<Inner>,
}

struct Inner {
    intake: Intake,
    store: Store,
    keys: Arc<KeyRing>,
    bot: Bot,
    inbox: InboxWriter,
    /// Events stored in the inbox since the process started (a flood's measure).
    accepted: std::sync::atomic::AtomicU64,
    wake_processor: Notify,
    outbox: Outbox,
    photos: Option<Arc<dyn PhotoSource>>,
    sms_numbers: Vec<SmsNumber>,
    /// Village subscriptions (set once the broadcast service exists).
    broadcasts: std::sync::OnceLock<crate::broadcast::Broadcasts>,
    /// The per-sender limit on receipt checks (set once by the app).
    sender_limit: std::sync::OnceLock<Arc<dyn SenderLimit>>,
}

impl Chat {
    /// Builds the service; answers go out through `outbox`.
    pub fn new(
        intake: Intake,
        bot: Bot,
        outbox: Outbox,
        photos: Option<Arc<dyn PhotoSource>>,
        sms_numbers: Vec<SmsNumber>,
    ) -> Chat {
        let store = intake.store().clone();
        let workers = match store.engine() {
            crate::store::Engine::Sqlite => 1,
            crate::store::Engine::Postgres => 4,
        };
        Chat {
            inner: Arc::new(Inner {
                keys: intake.keys_arc(),
                inbox: InboxWriter::spawn(store.clone(), workers),
                store,
                intake,
                bot,
                accepted: std::sync::atomic::AtomicU64::new(0),
                wake_processor: Notify::new(),
                outbox,
                photos,
                sms_numbers,
                broadcasts: std::sync::OnceLock::new(),
                sender_limit: std::sync::OnceLock::new(),
            }),
        }
    }

    /// Lets residents subscribe to villages' broadcasts and opt out through the bots.
    pub fn attach_broadcasts(&self, broadcasts: crate::broadcast::Broadcasts) {
        let _ = self.inner.broadcasts.set(broadcasts);
    }

    /// Limits receipt checks (`KT`, `TL` with a receipt) per sender pseudonym.
    pub fn attach_sender_limit(&self, limit: Arc<dyn SenderLimit>) {
        let _ = self.inner.sender_limit.set(limit);
    }

    /// Counts a receipt check by `sender`; the localised "try again in N minutes" when
    /// the sender has checked too often.
    fn receipt_limited(&self, sender: &[u8], lang: &str) -> Option<String> {
        let limit = self.inner.sender_limit.get()?;
        let minutes = limit.check_receipt(sender).err()?;
        Some(self.inner.bot.fill(
            lang,
            "error.rate_limited",
            &[("minutes", &minutes.to_string())],
        ))
    }

    /// Subscribes the sender to the village `query` names; the answer's texts.
    async fn subscribe(
        &self,
        ev: &Inbound,
        lang: &str,
        query: &str,
    ) -> Result<Vec<String>, ChatError> {
        let bot = &self.inner.bot;
        let say = |key: &str| bot.text(lang, key).to_owned();
        let Some(b) = self.inner.broadcasts.get() else {
            return Ok(vec![say("subscribe.unavailable")]);
        };
        let found = b.find_villages(self.inner.intake.geo(), query).await?;
        match found.as_slice() {
            [] => Ok(vec![say("subscribe.not_found")]),
            [(v, commune)] => {
                b.subscribe(ev.transport, &ev.sender, v.id, lang).await?;
                Ok(vec![say("subscribe.done")
                    .replace("{village}", &v.name)
                    .replace("{commune}", commune)])
            }
            several => {
                let list = several
                    .iter()
                    .map(|(v, c)| format!("DK {} – {}, {}", v.id, v.name, c))
                    .collect::<Vec<_>>()
                    .join("\n");
                Ok(vec![format!("{}\n{list}", say("subscribe.choose"))])
            }
        }
    }

    /// Ends the sender's village subscriptions (STOP, HUY, a block, an unfollow): found
    /// by the subscriber pseudonym that belongs to this sender pseudonym, and deleted.
    async fn opt_out(&self, sender: &[u8]) -> Result<(), ChatError> {
        let subscriber = self.inner.keys.subscriber_pseudonym_of(sender);
        self.inner.store.opt_out_sender(&subscriber).await?;
        Ok(())
    }

    /// The bot's data.
    pub fn bot(&self) -> &Bot {
        &self.inner.bot
    }

    /// Seals and durably stores provider events (among the inbox's arrivals: a retry of
    /// an event already accepted is dropped when they are sorted into the inbox); returns
    /// how many were stored. The caller answers the provider only after.
    pub async fn accept(&self, events: Vec<Inbound>) -> Result<usize, ChatError> {
        let now = now_ms();
        let waits = events.iter().map(|e| {
            let inner = &self.inner;
            let sender = inner.keys.sender_pseudonym(e.transport.as_str(), &e.sender);
            let (dedupe_key, dedupe_after) = match &e.provider_id {
                Some(id) => (
                    inner
                        .keys
                        .pseudonym("inbound-id", &format!("{}|{id}", e.transport.as_str())),
                    now - SEEN_ID_MS,
                ),
                None => {
                    let content = serde_json::to_string(&e.kind).unwrap_or_default();
                    (
                        inner.keys.pseudonym(
                            "inbound-content",
                            &format!("{}|{}|{content}", e.transport.as_str(), e.sender),
                        ),
                        now - SEEN_CONTENT_MS,
                    )
                }
            };
            // Time-ordered (as `received_at`, stored beside it): the inbox's unique index
            // takes it at its end, not on a random page (issue 15).
            let reference = uuid::Uuid::now_v7().simple().to_string();
            let plain = serde_json::to_vec(e).unwrap_or_default();
            let event = inner.keys.seal_record("inbox", &reference, &plain);
            inner.inbox.insert(NewInboxEvent {
                reference,
                transport: e.transport.as_str(),
                sender,
                received_at: now,
                event,
                dedupe_key,
                dedupe_after,
            })
        });
        for r in futures_util::future::join_all(waits).await {
            r?;
        }
        let stored = events.len();
        if stored > 0 {
            self.inner
                .accepted
                .fetch_add(stored as u64, std::sync::atomic::Ordering::Relaxed);
            self.inner.wake_processor.notify_one();
        }
        Ok(stored)
    }

    /// Sorts up to [`SORT_BATCH`] arrivals into the inbox (retries dropped); returns how
    /// many arrivals it took. On SQLite through the writers' connection, whose page cache
    /// holds the inbox's indexes.
    async fn sort_arrivals(&self) -> Result<u64, ChatError> {
        let sorted = self
            .inner
            .store
            .for_writers()
            .sort_arrivals(SORT_BATCH)
            .await?;
        if sorted.new > 0 {
            metrics::counter!("tinbao_inbound_events_total").increment(sorted.new);
        }
        if sorted.retries > 0 {
            metrics::counter!("tinbao_inbound_retries_total").increment(sorted.retries);
        }
        Ok(sorted.new + sorted.retries)
    }

    /// Starts the processor (and the sweeper of idle conversations). Several processes
    /// may run it on one database: events are leased, one sender's in order.
    pub fn spawn_processor(&self) {
        let chat = self.clone();
        tokio::spawn(async move {
            let mut seen = std::collections::VecDeque::new();
            loop {
                chat.yield_to_intake(&mut seen).await;
                let sorted = match chat.sort_arrivals().await {
                    Ok(n) => n,
                    Err(e) => {
                        tracing::warn!(error = %e, "sorting arrived events failed; retrying");
                        0
                    }
                };
                let n = match chat.process_due().await {
                    Ok(n) => n + sorted as usize,
                    Err(e) => {
                        tracing::warn!(error = %e, "chat inbox round failed; retrying");
                        sorted as usize
                    }
                };
                if n == 0 {
                    let _ = tokio::time::timeout(
                        Duration::from_millis(500),
                        chat.inner.wake_processor.notified(),
                    )
                    .await;
                }
            }
        });
        let chat = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(600));
            loop {
                tick.tick().await;
                let now = now_ms();
                let idle = chat.inner.bot.idle_expiry_hours * 3600 * 1000;
                let store = &chat.inner.store;
                if let Err(e) = store.expire_chat_sessions(now - idle).await {
                    tracing::warn!(error = %e, "could not expire idle conversations");
                }
                if let Err(e) = store.forget_seen(now - SEEN_ID_MS).await {
                    tracing::warn!(error = %e, "could not forget old message ids");
                }
                chat.forget_old_replays(now).await;
            }
        });
    }

    /// On SQLite, one connection writes at a time: during a flood (several webhooks
    /// waiting for their events to be stored, or over 400 events a second stored over the
    /// last tenth of a second) processing waits, in looks of 20 ms up to a quarter of a
    /// second a round, so that accepting events durably comes first; the backlog is
    /// sorted and processed once the flood ebbs, and a sort (1,024 arrivals) and a claim
    /// (64 events) a round meanwhile. A trickle (one SMS tip after another, 200 a second)
    /// is processed at once. With 16 waiting as the mark, sixteen gateways sending at
    /// once kept processing's writes between every two batches of the inbox's, and
    /// accepted a quarter of what the inbox can take (issue 15); with 4, processing still
    /// slipped in whenever a batch had just emptied the queue.
    async fn yield_to_intake(
        &self,
        seen: &mut std::collections::VecDeque<(tokio::time::Instant, u64)>,
    ) {
        const FLOOD: usize = 4;
        const FLOOD_PER_S: u64 = 400;
        // Events stored in a look: 8 in 20 ms is 400 a second.
        const FLOOD_STORED: u64 = FLOOD_PER_S / 50;
        const LOOK: Duration = Duration::from_millis(20);
        const SPAN: Duration = Duration::from_millis(100);
        if self.inner.store.engine() != crate::store::Engine::Sqlite {
            return;
        }
        let stored = || {
            self.inner
                .accepted
                .load(std::sync::atomic::Ordering::Relaxed)
        };
        // The rate stored over the last SPAN, from what earlier rounds saw.
        let start = tokio::time::Instant::now();
        let now = stored();
        seen.push_back((start, now));
        while seen.len() > 2 && start - seen[1].0 >= SPAN {
            seen.pop_front();
        }
        let (since, then) = seen[0];
        let span = start - since;
        let fast = span >= LOOK && (now - then) * 1000 >= FLOOD_PER_S * span.as_millis() as u64;
        if !fast && self.inner.inbox.pending() < FLOOD {
            return;
        }
        // A flood is many webhooks waiting now, or many events stored in the last look
        // (the writer empties its queue a batch at a time, so "waiting" alone comes and
        // goes within a flood, and processing slipped in at every dip).
        let mut before = stored();
        while start.elapsed() < Duration::from_millis(250) {
            tokio::time::sleep(LOOK).await;
            let now = stored();
            if now - before < FLOOD_STORED && self.inner.inbox.pending() < FLOOD {
                break;
            }
            before = now;
        }
    }

    /// Processes the events due now; returns how many were taken.
    pub async fn process_due(&self) -> Result<usize, ChatError> {
        let now = now_ms();
        let rows = self
            .inner
            .store
            .claim_inbox(now, now + LEASE_MS, 64)
            .await?;
        let n = rows.len();
        let tasks = rows.into_iter().map(|row| {
            let chat = self.clone();
            async move {
                let id = row.id;
                let attempts = row.attempts;
                if let Err(e) = chat.process(row).await {
                    // Kept in the inbox: tried again later, never dropped.
                    let wait = 1000i64 << attempts.clamp(0, 8);
                    tracing::warn!(error = %e, attempts, "a chat event failed; it will be retried");
                    let _ = chat
                        .inner
                        .store
                        .release_inbox(id, now_ms() + wait.min(300_000))
                        .await;
                }
            }
        });
        futures_util::future::join_all(tasks).await;
        Ok(n)
    }

    async fn process(&self, row: InboxRow) -> Result<(), ChatError> {
        let inner = &self.inner;
        let plain = inner
            .keys
            .open_record("inbox", &row.reference, &row.event)
            .map_err(|_| ChatError::Sealed)?;
        let ev: Inbound = serde_json::from_slice(&plain).map_err(|_| ChatError::Sealed)?;
        let consumed = if ev.transport.is_sms() {
            self.sms(&ev, &row).await?
        } else {
            self.dialog(&ev, &row).await?
        };
        // A tip submitted from this event already removed it, in the tip's transaction.
        if !consumed {
            inner.store.finish_inbox(row.id).await?;
        }
        Ok(())
    }

    /// Queues one answer (several texts of a turn go as one message, in order).
    async fn answer(
        &self,
        transport: Transport,
        to: &str,
        texts: &[String],
    ) -> Result<(), ChatError> {
        if texts.is_empty() {
            return Ok(());
        }
        let message = Outgoing::new(to, texts.join("\n\n"));
        self.inner.outbox.queue(transport, &message).await?;
        Ok(())
    }

    async fn dialog(&self, ev: &Inbound, row: &InboxRow) -> Result<bool, ChatError> {
        let inner = &self.inner;
        let now = now_ms();
        let sender = &row.sender;
        let saved = inner.store.chat_session(sender).await?;
        let idle = inner.bot.idle_expiry_hours * 3600 * 1000;
        let sealed_id = hex::encode(sender);
        let (mut state, version) = match &saved {
            Some(s) if s.updated_at >= now - idle => {
                let plain = inner
                    .keys
                    .open_record("dialog", &sealed_id, &s.state)
                    .map_err(|_| ChatError::Sealed)?;
                let state: DialogState = serde_json::from_slice(&plain)
                    .unwrap_or_else(|_| DialogState::new(&inner.bot.default_language));
                (state, Some(s.version))
            }
            Some(s) => (
                DialogState::new(&inner.bot.default_language),
                Some(s.version),
            ),
            None => (DialogState::new(&inner.bot.default_language), None),
        };
        let open = inner.store.open_tips_of_sender(sender).await?;
        let geo = inner.intake.geo();
        // A receipt the person types is kept in the conversation only as its HMAC, the
        // form the tips table holds: never the digits, sealed or not.
        let keys = &inner.keys;
        let receipt_ref = |r: &Receipt| hex::encode(keys.receipt_mac(r));
        let ctx = Context {
            geo,
            has_open_tip: !open.is_empty(),
            receipt_ref: &receipt_ref,
        };
        // A poster's link or code ("/start dk12", "DK 12") subscribes at once.
        let direct = match &ev.kind {
            InboundKind::Message { text, .. } => direct_subscription(text),
            _ => None,
        };
        let turn = match direct {
            Some(query) => engine::Turn {
                action: Some(Action::Subscribe(query)),
                ..engine::Turn::default()
            },
            None => engine::step(&inner.bot, &mut state, &ev.kind, &ctx),
        };
        let mut replies = turn.replies;
        let lang = state.lang.clone();
        let mut forget = false;
        let mut consumed = false;
        // A receipt check (or a reply by receipt, which tells as much) counts against the
        // sender's limit first.
        let action = match turn.action {
            Some(Action::Check(_))
            | Some(Action::Reply {
                receipt_ref: Some(_),
                ..
            }) => match self.receipt_limited(sender, &lang) {
                Some(wait) => {
                    replies.push(wait);
                    None
                }
                None => turn.action,
            },
            other => other,
        };
        match action {
            None => {}
            Some(Action::Submit(draft)) => {
                match self.submit(ev, row, &lang, draft.clone()).await? {
                    Ok(()) => consumed = true,
                    Err(key) => {
                        // The draft comes back (without photos that failed) for another try.
                        state.draft = draft;
                        state.draft.photos.clear();
                        state.mode = engine::Mode::Tip {
                            step: inner.bot.steps.len().saturating_sub(2),
                        };
                        replies.push(inner.bot.text(&lang, key).to_owned());
                    }
                }
            }
            Some(Action::Check(digits)) => replies.extend(self.check(&lang, &digits).await?),
            Some(Action::Reply {
                receipt_ref,
                text,
                photos,
            }) => {
                let key = self
                    .add_to_tip(ev.transport, receipt_ref.as_deref(), &open, &text, &photos)
                    .await?;
                replies.push(
                    inner
                        .bot
                        .fill(&lang, key, &[("max", &MAX_TEXT.to_string())]),
                );
            }
            Some(Action::Idle { text, photos }) => {
                if open.is_empty() {
                    replies.push(inner.bot.text(&lang, "unknown").to_owned());
                } else {
                    let key = self
                        .add_to_tip(ev.transport, None, &open, &text, &photos)
                        .await?;
                    replies.push(
                        inner
                            .bot
                            .fill(&lang, key, &[("max", &MAX_TEXT.to_string())]),
                    );
                }
            }
            Some(Action::Subscribe(query)) => {
                replies.extend(self.subscribe(ev, &lang, &query).await?);
            }
            Some(Action::Stop) => {
                inner.store.erase_sender_contacts(sender).await?;
                self.opt_out(sender).await?;
                forget = true;
            }
        }
        if forget {
            inner.store.delete_chat_session(sender).await?;
        } else {
            let plain = serde_json::to_vec(&state).unwrap_or_default();
            let sealed = inner.keys.seal_record("dialog", &sealed_id, &plain);
            let version = match (&saved, version) {
                // An expired conversation is replaced.
                (Some(_), Some(v)) => Some(v),
                _ => None,
            };
            if !inner
                .store
                .save_chat_session(sender, ev.transport.as_str(), version, now, &sealed)
                .await?
            {
                return Err(ChatError::Raced);
            }
        }
        // Someone who unfollowed cannot be written to.
        if !matches!(ev.kind, InboundKind::Unfollow) {
            self.answer(ev.transport, &ev.sender, &replies).await?;
        }
        Ok(consumed)
    }

    /// Sends a drafted tip; `Ok(Err(text key))` when the person must fix something.
    async fn submit(
        &self,
        ev: &Inbound,
        row: &InboxRow,
        lang: &str,
        draft: Draft,
    ) -> Result<Result<(), &'static str>, ChatError> {
        let inner = &self.inner;
        let mut photos = Vec::new();
        for p in &draft.photos {
            match self.fetch_photo(ev.transport, p).await {
                Ok(bytes) => photos.push(bytes),
                Err(_) => return Ok(Err("error.photos_failed")),
            }
        }
        let place = draft
            .location
            .map(|(lat, lon)| format!("{lat:.6}, {lon:.6}"))
            .unwrap_or_default();
        let input = TipInput {
            category: draft.category.unwrap_or_else(|| "other".into()),
            province: None,
            commune: draft.commune,
            village: draft.village.unwrap_or_default(),
            place_details: place,
            occurred_at: String::new(),
            happening_now: false,
            description: draft.description.unwrap_or_default(),
            contact: None,
            photos,
        };
        let origin = ChatOrigin {
            transport: ev.transport,
            sender: row.sender.clone(),
            address: ev.sender.clone(),
            receipt_text: inner.bot.text(lang, "receipt").to_owned(),
            inbox_id: Some(row.id),
            photos_missing: 0,
        };
        match inner
            .intake
            .submit_from(ev.transport.channel(), input, Some(origin))
            .await
        {
            Ok(_) => {
                inner.outbox.wake();
                Ok(Ok(()))
            }
            Err(IntakeError::Invalid(errors)) => {
                if errors.iter().any(|e| e.field == "photos") {
                    Ok(Err("error.photos_failed"))
                } else {
                    Ok(Err("error.try_later"))
                }
            }
            Err(e) => Err(e.into()),
        }
    }

    async fn fetch_photo(&self, transport: Transport, p: &PhotoRef) -> Result<Vec<u8>, String> {
        match (p, &self.inner.photos) {
            (PhotoRef::Bytes(b), _) => Ok(b.clone()),
            (PhotoRef::Withheld, _) => Err("the gateway does not hand over MMS content".into()),
            (_, Some(source)) => source.fetch(transport, p).await,
            (_, None) => Err("no photo source".into()),
        }
    }

    /// The status of a tip, as chat texts.
    async fn check(&self, lang: &str, digits: &str) -> Result<Vec<String>, ChatError> {
        let bot = &self.inner.bot;
        let Ok(receipt) = Receipt::parse(digits) else {
            return Ok(vec![bot.text(lang, "error.receipt").to_owned()]);
        };
        let Some(view) = self.inner.intake.status(&receipt).await? else {
            return Ok(vec![bot.text(lang, "check.unknown").to_owned()]);
        };
        let date = crate::i18n::local_time;
        let mut out = vec![bot.fill(
            lang,
            "check.status",
            &[
                (
                    "category",
                    bot.text(lang, &format!("category.{}", view.category.as_str())),
                ),
                ("date", &date(view.created_at)),
                (
                    "status",
                    bot.text(lang, &format!("status.{}", view.status.as_str())),
                ),
            ],
        )];
        for m in view.messages.iter().filter(|m| m.author == "police") {
            out.push(bot.fill(
                lang,
                "check.message",
                &[("date", &date(m.created_at)), ("text", &m.text)],
            ));
        }
        if view.reward_eligible {
            out.push(bot.text(lang, "check.reward").to_owned());
        }
        Ok(out)
    }

    /// Adds a message to a tip (by its receipt's HMAC in hex, see `Context::receipt_ref`,
    /// or the sender's newest open tip); returns the text key of the answer.
    async fn add_to_tip(
        &self,
        transport: Transport,
        receipt_ref: Option<&str>,
        open: &[TipContactRow],
        text: &str,
        photos: &[PhotoRef],
    ) -> Result<&'static str, ChatError> {
        let mut bytes = Vec::new();
        for p in photos {
            match self.fetch_photo(transport, p).await {
                Ok(b) => bytes.push(b),
                Err(_) => return Ok("error.photos_failed"),
            }
        }
        let intake = &self.inner.intake;
        let done = match (receipt_ref.map(hex::decode), open.first()) {
            (Some(Ok(mac)), _) => intake.reply_by_receipt_mac(&mac, text, bytes).await,
            (Some(Err(_)), _) => return Ok("error.receipt"),
            (None, Some(c)) => intake.chat_reply(&c.tip_id, text, bytes, 0).await,
            (None, None) => return Ok("reply.no_open_tip"),
        };
        match done {
            Ok(true) => Ok("reply.sent"),
            Ok(false) => Ok("check.unknown"),
            Err(IntakeError::Invalid(errors)) if errors.iter().any(|e| e.field == "photos") => {
                Ok("error.photos_failed")
            }
            Err(IntakeError::Invalid(_)) => Ok("error.too_long"),
            Err(e) => Err(e.into()),
        }
    }

    /// SMS: a whole tip in one message, follow-ups by number, STOP/HUY.
    async fn sms(&self, ev: &Inbound, row: &InboxRow) -> Result<bool, ChatError> {
        let inner = &self.inner;
        let bot = &inner.bot;
        let lang = bot.default_language.clone();
        let InboundKind::Message { text, photos, .. } = &ev.kind else {
            return Ok(false);
        };
        let text = text.trim();
        let folded = fold(text);
        let words = &bot.sms;
        // An MMS the gateway announced without its content (Android).
        let withheld = photos.iter().any(|p| matches!(p, PhotoRef::Withheld));
        let keyword = |list: &[String]| {
            list.iter()
                .find(|k| folded == **k || folded.starts_with(&format!("{k} ")))
                .map(|k| k.split(' ').count())
        };
        let say = |key: &str| bot.text(&lang, key).to_owned();
        if keyword(&words.stop_keywords).is_some() && folded.split(' ').count() <= 2 {
            inner.store.erase_sender_contacts(&row.sender).await?;
            self.opt_out(&row.sender).await?;
            inner.store.delete_chat_session(&row.sender).await?;
            return self
                .answer(ev.transport, &ev.sender, &[say("stopped")])
                .await
                .map(|()| false);
        }
        if keyword(&words.check_keywords).is_some() {
            let digits: String = text.chars().filter(char::is_ascii_digit).collect();
            let replies = match self.receipt_limited(&row.sender, &lang) {
                Some(wait) => vec![wait],
                None => self.check(&lang, &digits).await?,
            };
            return self
                .answer(ev.transport, &ev.sender, &replies)
                .await
                .map(|()| false);
        }
        if keyword(&words.subscribe_keywords).is_some() {
            let replies = match direct_subscription(text) {
                Some(query) => self.subscribe(ev, &lang, &query).await?,
                None => vec![say("subscribe.ask")],
            };
            return self
                .answer(ev.transport, &ev.sender, &replies)
                .await
                .map(|()| false);
        }
        let tip_words = keyword(&words.tip_keywords);
        let open = inner.store.open_tips_of_sender(&row.sender).await?;
        if tip_words.is_none() {
            if let Some(c) = open.first() {
                // An MMS's photos join the tip; those that did not arrive are noted.
                let mms = self.fetch_mms(ev.transport, photos).await;
                let missing = self.sms_follow_up(&c.tip_id, text, mms).await?;
                let mut replies = vec![say("sms.joined")];
                replies.extend(self.photos_missing_text(&lang, missing, withheld));
                return self
                    .answer(ev.transport, &ev.sender, &replies)
                    .await
                    .map(|()| false);
            }
        }
        // Drop the keyword: the rest is the tip.
        let body: String = match tip_words {
            Some(n) => text
                .split_whitespace()
                .skip(n)
                .collect::<Vec<_>>()
                .join(" "),
            None => text.to_owned(),
        };
        if body.chars().count() < words.min_chars {
            // Photos alone make no tip; an MMS whose content never reaches us is told so.
            let mut replies = Vec::new();
            if !(withheld && body.is_empty()) {
                replies.push(say("sms.too_short"));
            }
            if withheld {
                replies.extend(self.photos_missing_text(&lang, photos.len(), true));
            }
            return self
                .answer(ev.transport, &ev.sender, &replies)
                .await
                .map(|()| false);
        }
        let commune = ev.to.as_deref().and_then(|to| {
            inner
                .sms_numbers
                .iter()
                .find(|n| same_number(&n.number, to))
                .map(|n| n.commune)
        });
        let mms::MmsPhotos { bytes, mut missing } = self.fetch_mms(ev.transport, photos).await;
        // The receipt's message also tells of photos that did not arrive.
        let receipt_text = |missing: usize| {
            let mut t = say("sms.receipt");
            if let Some(line) = self.photos_missing_text(&lang, missing, withheld) {
                t.push(' ');
                t.push_str(&line);
            }
            t
        };
        let mut input = TipInput {
            category: Category::Other.as_str().into(),
            commune,
            description: body,
            photos: bytes,
            ..TipInput::default()
        };
        let mut origin = ChatOrigin {
            transport: ev.transport,
            sender: row.sender.clone(),
            address: ev.sender.clone(),
            receipt_text: receipt_text(missing),
            inbox_id: Some(row.id),
            photos_missing: missing,
        };
        let channel = ev.transport.channel();
        let mut result = inner
            .intake
            .submit_from(channel, input.clone(), Some(origin.clone()))
            .await;
        // Photos intake cannot read never cost the tip: it goes without them.
        if matches!(&result, Err(e) if !input.photos.is_empty() && mms::photos_refused(e)) {
            missing += input.photos.len();
            input.photos.clear();
            origin.receipt_text = receipt_text(missing);
            origin.photos_missing = missing;
            result = inner.intake.submit_from(channel, input, Some(origin)).await;
        }
        match result {
            Ok(_) => {
                inner.outbox.wake();
                mms::count_missing(missing);
                Ok(true)
            }
            Err(IntakeError::Invalid(_)) => self
                .answer(ev.transport, &ev.sender, &[say("sms.too_short")])
                .await
                .map(|()| false),
            Err(e) => Err(e.into()),
        }
    }
}

/// Whether two phone numbers are the same, whatever the spacing or a leading `+`/`00`.
fn same_number(a: &str, b: &str) -> bool {
    let digits = |s: &str| {
        let d: String = s.chars().filter(char::is_ascii_digit).collect();
        d.strip_prefix("00").map(str::to_owned).unwrap_or(d)
    };
    let (a, b) = (digits(a), digits(b));
    !a.is_empty() && a == b
}

/// A subscription in one message: "DK 12", "dk12", "đăng ký Thôn 3, Hoàng Văn Thụ",
/// "/start dk12" (a poster's Telegram link). The village part, when there is one.
pub fn direct_subscription(text: &str) -> Option<String> {
    let t = text.trim().trim_start_matches('/');
    // "start " is ASCII: compared as bytes, so the rest is cut where it starts in `t`. (A
    // lowercased copy cannot be used to find it: "K" (the Kelvin sign) or "İ" change
    // length when lowercased, and cutting `t` at the copy's offsets panicked.)
    let rest = match t.get(..6) {
        Some(head) if head.eq_ignore_ascii_case("start ") => &t[6..],
        _ => t,
    };
    let folded_rest = fold(rest);
    for word in ["dang ky", "subscribe", "dk"] {
        if let Some(after) = folded_rest.strip_prefix(word) {
            // The words themselves have no accents once folded; cut the same number of
            // words (or letters, for "dk12") off the original to keep its accents.
            let query = if after.starts_with(' ') || after.is_empty() {
                let n = word.split(' ').count();
                rest.split_whitespace()
                    .skip(n)
                    .collect::<Vec<_>>()
                    .join(" ")
            } else if after.chars().all(|c| c.is_ascii_digit()) {
                after.to_owned()
            } else {
                return None;
            };
            let query = query.trim().to_owned();
            return (!query.is_empty()).then_some(query);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phone_numbers_compare_by_digits() {
        assert!(same_number("+84 912 345 678", "0084912345678"));
        assert!(!same_number("+84912345678", "+84912345679"));
        assert!(!same_number("", ""));
    }

    #[test]
    fn a_start_link_is_read_whatever_its_letters_do_when_lowercased() {
        assert_eq!(direct_subscription("/start dk12").as_deref(), Some("12"));
        assert_eq!(direct_subscription("/START DK 12").as_deref(), Some("12"));
        assert_eq!(
            direct_subscription("/start đăng ký Thôn 3").as_deref(),
            Some("Thôn 3")
        );
        // Found while writing the chat_commands fuzz target (its corpus keeps them): these
        // cut the message inside a character (Kelvin sign: 3 bytes, lowercased 1) or
        // before its start (İ: 2 bytes, lowercased 3), a panic that stopped the chat
        // processor.
        assert_eq!(direct_subscription("/start \u{212A}"), None);
        assert_eq!(direct_subscription("/start İİİİİİİ"), None);
        assert_eq!(
            direct_subscription("start dk \u{212A}Thôn").as_deref(),
            Some("\u{212A}Thôn")
        );
    }
}
