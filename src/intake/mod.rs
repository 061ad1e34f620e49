//! The channel-neutral intake service: every channel (web form, API, hotline, bots) hands
//! its tip here; intake validates, seals, commits and answers the receipt. It also serves
//! the tipster's side of the follow-up: status by receipt, and replies.

pub mod photo;

use crate::channels::Transport;
use crate::clock::now_ms;
use crate::config::SlaConfig;
use crate::crypto::{KeyRing, OpenError, Receipt, TipKey, WrappedKey};
use crate::delivery::outbox_row;
use crate::geo::Geo;
use crate::store::{
    AttachmentMeta, ChatTipExtras, MessageRow, NewAttachment, NewMessageRecord, NewOutboxRow,
    NewTipContact, NewTipRecord, NoteRow, Store, TipRow, TipWriter, Village,
};
use crate::tips::{Category, Channel, Priority, PublicStatus, Status};
use photo::{CleanPhoto, PhotoLimits};
use std::sync::Arc;

/// Most photos one tip or reply may carry.
pub const MAX_PHOTOS: usize = 5;
/// Longest description or message, in characters.
pub const MAX_TEXT: usize = 5000;
const MAX_PLACE: usize = 1000;
const MAX_VILLAGE: usize = 120;
const MAX_WHEN: usize = 100;
const MAX_CONTACT: usize = 200;

/// A tip as a channel received it, before validation.
#[derive(Debug, Default, Clone)]
pub struct TipInput {
    pub category: String,
    pub province: Option<i64>,
    pub commune: Option<i64>,
    pub village: String,
    pub place_details: String,
    pub occurred_at: String,
    pub happening_now: bool,
    pub description: String,
    /// A way to reach the tipster, only when they chose to leave one.
    pub contact: Option<String>,
    /// Raw photo files as uploaded.
    pub photos: Vec<Vec<u8>>,
}

/// Where a chat or SMS tip came from, and how its receipt goes back.
#[derive(Clone)]
pub struct ChatOrigin {
    pub transport: Transport,
    /// The sender's keyed pseudonym.
    pub sender: Vec<u8>,
    /// The clear reply address (chat id, user id, phone number); sealed before storing.
    pub address: String,
    /// The message that carries the receipt, with `{receipt}` where it goes.
    pub receipt_text: String,
    /// The inbox event to remove with the tip.
    pub inbox_id: Option<i64>,
    /// Photos sent with the tip that could not be fetched or read, noted on the tip in
    /// its own transaction.
    pub photos_missing: usize,
}

/// One problem with one field; `code` is a key into the texts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldError {
    pub field: &'static str,
    pub code: &'static str,
}

/// Why intake refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum IntakeError {
    #[error("invalid input")]
    Invalid(Vec<FieldError>),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error("a stored tip could not be opened")]
    Sealed(#[from] OpenError),
    /// Every receipt drawn collided with a stored one (astronomically unlikely: a sign of a
    /// broken random source).
    #[error("could not draw a unique receipt")]
    NoUniqueReceipt,
}

/// One message of a tip's conversation, opened.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct MessageView {
    /// The message's id (internal: never shown to the tipster).
    #[serde(skip)]
    pub id: String,
    /// `police` or `tipster`.
    pub author: String,
    /// Unix milliseconds.
    pub created_at: i64,
    pub text: String,
    pub photos: usize,
}

/// What the holder of a receipt may see of their tip.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct TipStatusView {
    pub status: PublicStatus,
    pub category: Category,
    /// Unix milliseconds.
    pub created_at: i64,
    /// The police marked the tip for a reward, claimed with the receipt.
    pub reward_eligible: bool,
    pub messages: Vec<MessageView>,
}

/// A tip opened in full (for the police; every call site must audit it).
#[derive(Debug, Clone)]
pub struct OpenedTip {
    pub row: TipRow,
    pub description: String,
    pub place_details: Option<String>,
    pub village_text: Option<String>,
    pub occurred_at: Option<String>,
    pub contact: Option<String>,
}

/// Told to whoever listens (the console's live queue, alerts) when a tip is stored. It
/// carries queue metadata only, never content.
#[derive(Debug, Clone)]
pub struct NewTipEvent {
    pub tip_id: String,
    pub province_code: Option<i64>,
    pub commune_code: Option<i64>,
    pub priority: Priority,
    pub category: Category,
    pub channel: Channel,
}

/// The intake service shared by every channel.
#[derive(Clone)]
pub struct Intake {
    events: tokio::sync::broadcast::Sender<NewTipEvent>,
    store: Store,
    writer: TipWriter,
    keys: Arc<KeyRing>,
    geo: Arc<Geo>,
    sla: SlaConfig,
    photo_limits: PhotoLimits,
    villages: Arc<VillageCache>,
}

/// How long a commune's villages are taken as read: a village added since (`tinbao
/// villages add`) is matched by name this much later at most; until then a tip naming it
/// keeps the name as sealed free text, as for any village the commune does not list.
const VILLAGES_FOR: std::time::Duration = std::time::Duration::from_secs(60);

/// The villages of each commune tips named, read once a minute at most instead of once a
/// tip (a read per tip was a tenth of a tip's work on the intake's hot path, issue 15).
/// Only communes that exist are kept, so the cache holds 3,321 entries at most.
#[derive(Default)]
struct VillageCache(std::sync::Mutex<std::collections::HashMap<i64, ReadVillages>>);

/// A commune's villages and when they were read.
type ReadVillages = (std::time::Instant, Arc<Vec<Village>>);

impl VillageCache {
    fn get(&self, commune: i64) -> Option<Arc<Vec<Village>>> {
        let map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        map.get(&commune)
            .filter(|(at, _)| at.elapsed() < VILLAGES_FOR)
            .map(|(_, v)| v.clone())
    }

    fn put(&self, commune: i64, villages: Arc<Vec<Village>>) {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        map.insert(commune, (std::time::Instant::now(), villages));
    }
}

/// A new record's id: time-ordered (UUIDv7), so a new tip's entry lands at the end of
/// the tips' primary-key index instead of on a random page of it (a random id dirtied a
/// page of that index per tip in every batch: a third of what a commit wrote, issue 15).
/// It tells no more than the record's `created_at`, stored beside it in clear.
fn new_id() -> String {
    uuid::Uuid::now_v7().simple().to_string()
}

fn check_len(errors: &mut Vec<FieldError>, field: &'static str, value: &str, max: usize) {
    if value.chars().count() > max {
        errors.push(FieldError {
            field,
            code: "error.too_long",
        });
    }
}

/// Trims a field and folds an empty one to `None`.
fn non_empty(s: &str) -> Option<&str> {
    let t = s.trim();
    (!t.is_empty()).then_some(t)
}

async fn clean_photos(
    photos: Vec<Vec<u8>>,
    limits: PhotoLimits,
    errors: &mut Vec<FieldError>,
) -> Vec<CleanPhoto> {
    if photos.len() > MAX_PHOTOS {
        errors.push(FieldError {
            field: "photos",
            code: "error.too_many_photos",
        });
        return Vec::new();
    }
    if photos.is_empty() {
        return Vec::new();
    }
    // Decoding is CPU work and memory: off the request threads, a bounded few at once.
    let results = photo::sanitize_all(photos, limits).await;
    let mut clean = Vec::new();
    for r in results {
        match r {
            Ok(p) => clean.push(p),
            Err(e) => {
                errors.push(FieldError {
                    field: "photos",
                    code: e.code(),
                });
                return Vec::new();
            }
        }
    }
    clean
}

fn seal_photos(key: &TipKey, photos: Vec<CleanPhoto>) -> Vec<NewAttachment> {
    photos
        .into_iter()
        .map(|p| {
            let id = new_id();
            NewAttachment {
                body: key.seal(&format!("attachment:{id}"), &p.jpeg),
                size: p.jpeg.len() as i64,
                content_type: "image/jpeg".into(),
                id,
            }
        })
        .collect()
}

impl Intake {
    /// Builds the service; `writer` commits new tips in batches.
    pub fn new(
        store: Store,
        writer: TipWriter,
        keys: Arc<KeyRing>,
        geo: Arc<Geo>,
        sla: SlaConfig,
    ) -> Self {
        Intake {
            events: tokio::sync::broadcast::channel(1024).0,
            store,
            writer,
            keys,
            geo,
            sla,
            photo_limits: PhotoLimits::default(),
            villages: Arc::default(),
        }
    }

    /// The administrative units in memory.
    pub fn geo(&self) -> &Geo {
        &self.geo
    }

    /// The administrative units, shared with a job that outlives a request.
    pub fn shared_geo(&self) -> Arc<Geo> {
        self.geo.clone()
    }

    /// New tips as they are stored (a listener that lags loses the oldest events).
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<NewTipEvent> {
        self.events.subscribe()
    }

    /// The key ring (for the console's account secrets and throttling keys).
    pub fn keys(&self) -> &KeyRing {
        &self.keys
    }

    /// The key ring, shared (for services that seal their own records).
    pub fn keys_arc(&self) -> Arc<KeyRing> {
        self.keys.clone()
    }

    /// The store behind intake.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Validates a tip without storing it (the form's "pick a province" step uses the
    /// same rules as submission).
    pub fn validate(&self, input: &TipInput) -> Vec<FieldError> {
        let mut errors = Vec::new();
        if Category::parse(input.category.trim()).is_none() {
            errors.push(FieldError {
                field: "category",
                code: "error.category_required",
            });
        }
        if let Some(p) = input.province {
            if self.geo.province(p).is_none() {
                errors.push(FieldError {
                    field: "province",
                    code: "error.unknown_province",
                });
            }
        }
        if let Some(c) = input.commune {
            match self.geo.commune(c) {
                None => errors.push(FieldError {
                    field: "commune",
                    code: "error.unknown_commune",
                }),
                Some(commune) if input.province.is_some_and(|p| p != commune.province_code) => {
                    errors.push(FieldError {
                        field: "commune",
                        code: "error.commune_not_in_province",
                    })
                }
                Some(_) => {}
            }
        }
        match non_empty(&input.description) {
            None => errors.push(FieldError {
                field: "description",
                code: "error.description_required",
            }),
            Some(d) => check_len(&mut errors, "description", d, MAX_TEXT),
        }
        check_len(
            &mut errors,
            "place_details",
            input.place_details.trim(),
            MAX_PLACE,
        );
        check_len(&mut errors, "village", input.village.trim(), MAX_VILLAGE);
        check_len(
            &mut errors,
            "occurred_at",
            input.occurred_at.trim(),
            MAX_WHEN,
        );
        if let Some(contact) = &input.contact {
            match non_empty(contact) {
                None => errors.push(FieldError {
                    field: "contact",
                    code: "error.contact_required",
                }),
                Some(c) => check_len(&mut errors, "contact", c, MAX_CONTACT),
            }
        }
        errors
    }

    /// Validates, seals and durably commits a tip; returns its receipt only once the tip is
    /// on disk.
    pub async fn submit(&self, channel: Channel, input: TipInput) -> Result<Receipt, IntakeError> {
        self.submit_from(channel, input, None).await
    }

    /// [`Intake::submit`] for a tip that came by chat or SMS: the tipster's reply address
    /// (sealed with the tip's key), the message carrying the receipt back (queued in the
    /// outbox) and the removal of the inbox event all commit in the tip's transaction.
    pub async fn submit_from(
        &self,
        channel: Channel,
        mut input: TipInput,
        origin: Option<ChatOrigin>,
    ) -> Result<Receipt, IntakeError> {
        let mut errors = self.validate(&input);
        // Moved, not copied: five 10 MB photos are 50 MB (issue 15).
        let raw_photos = std::mem::take(&mut input.photos);
        let photos = if errors.is_empty() {
            clean_photos(raw_photos, self.photo_limits, &mut errors).await
        } else {
            Vec::new()
        };
        if !errors.is_empty() {
            return Err(IntakeError::Invalid(errors));
        }
        let category = Category::parse(input.category.trim()).expect("validated");
        let province = input.province.or_else(|| {
            input
                .commune
                .and_then(|c| self.geo.commune(c))
                .map(|c| c.province_code)
        });
        let village_name = non_empty(&input.village);
        let village_id = match (input.commune, village_name) {
            (Some(c), Some(name)) => {
                let name = name.to_lowercase();
                self.villages_of(c)
                    .await?
                    .iter()
                    .find(|v| v.name.to_lowercase() == name)
                    .map(|v| v.id)
            }
            _ => None,
        };
        let id = new_id();
        let (key, wrapped) = self.keys.new_tip_key(&id);
        let created_at = now_ms();
        let priority = Priority::assess(category, input.happening_now);
        let seal_opt = |field: &str, v: Option<&str>| v.map(|v| key.seal_str(field, v));
        let mut record = NewTipRecord {
            receipt_mac: Vec::new(),
            channel: channel.as_str(),
            category: category.as_str(),
            priority: priority.as_i64(),
            status: Status::New.as_str(),
            happening_now: input.happening_now,
            province_code: province,
            commune_code: input.commune,
            village_id,
            created_at,
            due_at: priority.due_at(created_at, &self.sla),
            key_id: wrapped.key_id.clone(),
            wrapped_key: wrapped.wrapped.clone(),
            description: key.seal_str("description", input.description.trim()),
            place_details: seal_opt("place_details", non_empty(&input.place_details)),
            // A village the commune does not list is kept as sealed free text.
            village_text: if village_id.is_none() {
                seal_opt("village_text", village_name)
            } else {
                None
            },
            occurred_at: seal_opt("occurred_at", non_empty(&input.occurred_at)),
            contact: seal_opt("contact", input.contact.as_deref().and_then(non_empty)),
            attachments: seal_photos(&key, photos),
            chat: None,
            id,
        };
        // A receipt collision is astronomically rare, but never fatal: draw again.
        for _ in 0..3 {
            let receipt = Receipt::generate();
            record.receipt_mac = self.keys.receipt_mac(&receipt);
            if let Some(o) = &origin {
                let text = o.receipt_text.replace("{receipt}", &receipt.to_string());
                record.chat = Some(ChatTipExtras {
                    contact: NewTipContact {
                        transport: o.transport.as_str(),
                        sender: o.sender.clone(),
                        address: key.seal_str("reply_address", &o.address),
                    },
                    outbox: vec![outbox_row(
                        &self.keys,
                        o.transport,
                        Some(&record.id),
                        None,
                        &o.address,
                        &text,
                    )],
                    inbox_id: o.inbox_id,
                    photos_missing: i64::try_from(o.photos_missing).unwrap_or(i64::MAX),
                });
            }
            match self.writer.insert(record.clone()).await {
                Ok(()) => {
                    // No per-tip metric: a counter that ticks with each tip tells whoever
                    // reads it each tip's minute, channel and category.
                    // No listener is fine: the event is a nudge, the database is the truth.
                    let _ = self.events.send(NewTipEvent {
                        tip_id: record.id.clone(),
                        province_code: record.province_code,
                        commune_code: record.commune_code,
                        priority,
                        category,
                        channel,
                    });
                    return Ok(receipt);
                }
                Err(e) if e.is_unique_violation() => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(IntakeError::NoUniqueReceipt)
    }

    /// A commune's villages, as read at most [`VILLAGES_FOR`] ago.
    async fn villages_of(&self, commune: i64) -> Result<Arc<Vec<Village>>, IntakeError> {
        if let Some(v) = self.villages.get(commune) {
            return Ok(v);
        }
        let villages = Arc::new(self.store.villages(commune).await?);
        if self.geo.commune(commune).is_some() {
            self.villages.put(commune, villages.clone());
        }
        Ok(villages)
    }

    fn tip_key(&self, row: &TipRow) -> Result<TipKey, OpenError> {
        let wrapped = WrappedKey {
            key_id: row.key_id.clone(),
            wrapped: row.wrapped_key.clone().ok_or(OpenError)?,
        };
        self.keys.open_tip_key(&row.id, &wrapped)
    }

    async fn tip_by_receipt(&self, receipt: &Receipt) -> Result<Option<TipRow>, IntakeError> {
        Ok(self
            .store
            .tip_by_receipt(&self.keys.receipt_mac(receipt))
            .await?)
    }

    /// A tip's conversation with the tipster, opened, oldest first.
    pub async fn conversation(&self, row: &TipRow) -> Result<Vec<MessageView>, IntakeError> {
        let rows = self.store.messages(&row.id).await?;
        let attachments = self.store.attachments(&row.id).await?;
        self.open_conversation(row, rows, &attachments)
    }

    /// Opens a tip's conversation from its message rows and the metadata of its
    /// attachments, already read (oldest first), for a caller that reads them itself.
    pub fn open_conversation(
        &self,
        row: &TipRow,
        rows: Vec<MessageRow>,
        attachments: &[AttachmentMeta],
    ) -> Result<Vec<MessageView>, IntakeError> {
        // A destroyed tip's messages are counted, never read: their bodies are gone.
        if row.destroyed_at.is_some() {
            return Ok(Vec::new());
        }
        let key = self.tip_key(row)?;
        let mut messages = Vec::with_capacity(rows.len());
        for m in rows {
            messages.push(MessageView {
                text: key.open_str(&format!("message:{}", m.id), &m.body)?,
                photos: attachments
                    .iter()
                    .filter(|a| a.message_id.as_deref() == Some(m.id.as_str()))
                    .count(),
                author: m.author,
                created_at: m.created_at,
                id: m.id,
            });
        }
        Ok(messages)
    }

    /// What the tipster sees for a receipt; `None` for an unknown receipt.
    pub async fn status(&self, receipt: &Receipt) -> Result<Option<TipStatusView>, IntakeError> {
        let Some(row) = self.tip_by_receipt(receipt).await? else {
            return Ok(None);
        };
        let messages = self.conversation(&row).await?;
        let status = Status::parse(&row.status).unwrap_or(Status::New);
        Ok(Some(TipStatusView {
            status: status.public(),
            category: Category::parse(&row.category).unwrap_or(Category::Other),
            created_at: row.created_at,
            reward_eligible: row.reward_eligible,
            messages,
        }))
    }

    /// A tip's internal notes, opened: (author id, time, text).
    pub async fn notes(&self, row: &TipRow) -> Result<Vec<(String, i64, String)>, IntakeError> {
        let notes = self.store.notes(&row.id).await?;
        self.open_notes(row, notes)
    }

    /// Opens a tip's note rows, already read: (author id, time, text).
    pub fn open_notes(
        &self,
        row: &TipRow,
        notes: Vec<NoteRow>,
    ) -> Result<Vec<(String, i64, String)>, IntakeError> {
        if row.destroyed_at.is_some() {
            return Ok(Vec::new());
        }
        let key = self.tip_key(row)?;
        let mut out = Vec::with_capacity(notes.len());
        for n in notes {
            out.push((
                n.author_id,
                n.created_at,
                key.open_str(&format!("note:{}", n.id), &n.body)?,
            ));
        }
        Ok(out)
    }

    /// Adds an internal note, sealed like the tip.
    pub async fn add_note(
        &self,
        row: &TipRow,
        author_id: &str,
        text: &str,
    ) -> Result<(), IntakeError> {
        let note = self.seal_note(row, author_id, text)?;
        self.store.add_note(&note).await?;
        Ok(())
    }

    /// Moves a tip to another commune's queue with its reason as a sealed note, both in
    /// one transaction.
    pub async fn transfer(
        &self,
        row: &TipRow,
        author_id: &str,
        to: &crate::store::Commune,
        reason: &str,
    ) -> Result<(), IntakeError> {
        let note = self.seal_note(row, author_id, reason)?;
        self.store
            .transfer(&row.id, to.province_code, to.code, &note, now_ms())
            .await?;
        Ok(())
    }

    fn seal_note(
        &self,
        row: &TipRow,
        author_id: &str,
        text: &str,
    ) -> Result<crate::store::NoteRow, IntakeError> {
        let key = self.tip_key(row)?;
        let id = new_id();
        Ok(crate::store::NoteRow {
            body: key.seal_str(&format!("note:{id}"), text),
            tip_id: row.id.clone(),
            author_id: author_id.to_owned(),
            created_at: now_ms(),
            id,
        })
    }

    /// Adds the tipster's reply (text and photos) to the tip; `Ok(false)` for an unknown
    /// receipt.
    pub async fn reply(
        &self,
        receipt: &Receipt,
        text: &str,
        photos: Vec<Vec<u8>>,
    ) -> Result<bool, IntakeError> {
        self.reply_by_receipt_mac(&self.keys.receipt_mac(receipt), text, photos)
            .await
    }

    /// [`Intake::reply`] by the receipt's stored form, its HMAC (a conversation that must
    /// remember a receipt keeps only that).
    pub async fn reply_by_receipt_mac(
        &self,
        receipt_mac: &[u8],
        text: &str,
        photos: Vec<Vec<u8>>,
    ) -> Result<bool, IntakeError> {
        let mut errors = Vec::new();
        if non_empty(text).is_none() && photos.is_empty() {
            errors.push(FieldError {
                field: "message",
                code: "error.message_required",
            });
        }
        check_len(&mut errors, "message", text.trim(), MAX_TEXT);
        let clean = if errors.is_empty() {
            clean_photos(photos, self.photo_limits, &mut errors).await
        } else {
            Vec::new()
        };
        if !errors.is_empty() {
            return Err(IntakeError::Invalid(errors));
        }
        let Some(row) = self.store.tip_by_receipt(receipt_mac).await? else {
            return Ok(false);
        };
        self.add_message(&row, "tipster", text.trim(), clean, false, 0)
            .await?;
        Ok(true)
    }

    /// Adds a police message to a tip, which the tipster reads with the receipt. The
    /// tipsters of tips marked as duplicates of it get the message too.
    pub async fn police_message(&self, tip_id: &str, text: &str) -> Result<bool, IntakeError> {
        let Some(row) = self.store.tip(tip_id).await? else {
            return Ok(false);
        };
        self.add_message(&row, "police", text.trim(), Vec::new(), true, 0)
            .await?;
        for dup in self.store.duplicates_of(tip_id).await? {
            if let Some(dup_row) = self.store.tip(&dup).await? {
                self.add_message(&dup_row, "police", text.trim(), Vec::new(), true, 0)
                    .await?;
            }
        }
        Ok(true)
    }

    /// Adds a tipster's chat or SMS message to an open tip reached through their reply
    /// address (no receipt needed), and notes when they last wrote. `photos_missing`
    /// counts photos sent with it that never arrived (MMS), noted on the tip with the
    /// message.
    pub async fn chat_reply(
        &self,
        tip_id: &str,
        text: &str,
        photos: Vec<Vec<u8>>,
        photos_missing: usize,
    ) -> Result<bool, IntakeError> {
        let mut errors = Vec::new();
        check_len(&mut errors, "message", text.trim(), MAX_TEXT);
        let clean = if errors.is_empty() {
            clean_photos(photos, self.photo_limits, &mut errors).await
        } else {
            Vec::new()
        };
        if !errors.is_empty() {
            return Err(IntakeError::Invalid(errors));
        }
        let Some(row) = self.store.tip(tip_id).await? else {
            return Ok(false);
        };
        let missing = i64::try_from(photos_missing).unwrap_or(i64::MAX);
        self.add_message(&row, "tipster", text.trim(), clean, false, missing)
            .await?;
        self.store.touch_tip_contact(tip_id, now_ms()).await?;
        Ok(true)
    }

    /// Queues a message to a tip's tipster over the channel the tip came from, when the
    /// tip still has a reply address; `false` when it has none.
    pub async fn message_tipster(&self, tip_id: &str, text: &str) -> Result<bool, IntakeError> {
        let Some(row) = self.store.tip(tip_id).await? else {
            return Ok(false);
        };
        let Some(out) = self.delivery_to_tipster(&row, None, text).await? else {
            return Ok(false);
        };
        self.store.enqueue(&[out]).await?;
        Ok(true)
    }

    /// The outbox row that carries `text` to the tipster's chat or phone, if the tip
    /// has a reply address.
    async fn delivery_to_tipster(
        &self,
        row: &TipRow,
        message_id: Option<&str>,
        text: &str,
    ) -> Result<Option<NewOutboxRow>, IntakeError> {
        let Some(contact) = self.store.tip_contact(&row.id).await? else {
            return Ok(None);
        };
        let Some(transport) = Transport::parse(&contact.transport) else {
            return Ok(None);
        };
        let key = self.tip_key(row)?;
        let address = key.open_str("reply_address", &contact.address)?;
        Ok(Some(outbox_row(
            &self.keys,
            transport,
            Some(&row.id),
            message_id,
            &address,
            text,
        )))
    }

    async fn add_message(
        &self,
        row: &TipRow,
        author: &'static str,
        text: &str,
        photos: Vec<CleanPhoto>,
        deliver: bool,
        photos_missing: i64,
    ) -> Result<(), IntakeError> {
        if row.destroyed_at.is_some() {
            return Err(IntakeError::Invalid(vec![FieldError {
                field: "message",
                code: "error.tip_destroyed",
            }]));
        }
        let key = self.tip_key(row)?;
        let id = new_id();
        // A police message also goes to the tipster's chat or phone, queued with it.
        let outbox = match deliver {
            true => self
                .delivery_to_tipster(row, Some(&id), text)
                .await?
                .into_iter()
                .collect(),
            false => Vec::new(),
        };
        let record = NewMessageRecord {
            body: key.seal_str(&format!("message:{id}"), text),
            attachments: seal_photos(&key, photos),
            outbox,
            tip_id: row.id.clone(),
            author,
            created_at: now_ms(),
            photos_missing,
            id,
        };
        self.store.add_message(&record).await?;
        Ok(())
    }

    /// Opens every sealed field of a tip. Callers in the console must audit the read.
    pub async fn open_tip(&self, tip_id: &str) -> Result<Option<OpenedTip>, IntakeError> {
        let Some(row) = self.store.tip(tip_id).await? else {
            return Ok(None);
        };
        self.open_row(row).map(Some)
    }

    /// Opens every sealed field of a tip row already read (the console reads it once per
    /// request). Callers in the console must audit the read.
    pub fn open_row(&self, row: TipRow) -> Result<OpenedTip, IntakeError> {
        // Destroyed under the retention rules: nothing left to open (the page says so).
        if row.destroyed_at.is_some() {
            return Ok(OpenedTip {
                description: String::new(),
                place_details: None,
                village_text: None,
                occurred_at: None,
                contact: None,
                row,
            });
        }
        let key = self.tip_key(&row)?;
        let open = |field: &str, v: &Option<Vec<u8>>| -> Result<Option<String>, OpenError> {
            v.as_ref().map(|b| key.open_str(field, b)).transpose()
        };
        Ok(OpenedTip {
            description: key.open_str("description", &row.description)?,
            place_details: open("place_details", &row.place_details)?,
            village_text: open("village_text", &row.village_text)?,
            occurred_at: open("occurred_at", &row.occurred_at)?,
            contact: open("contact", &row.contact)?,
            row,
        })
    }

    /// Seals a hold's reason with the tip's key (destroyed with it).
    pub fn seal_hold_reason(&self, row: &TipRow, reason: &str) -> Result<Vec<u8>, IntakeError> {
        Ok(self.tip_key(row)?.seal_str("hold_reason", reason))
    }

    /// The reason a tip is held as evidence, opened.
    pub async fn hold_reason(&self, row: &TipRow) -> Result<Option<String>, IntakeError> {
        if row.destroyed_at.is_some() {
            return Ok(None);
        }
        let Some(sealed) = self.store.hold_reason(&row.id).await? else {
            return Ok(None);
        };
        Ok(Some(self.tip_key(row)?.open_str("hold_reason", &sealed)?))
    }

    /// Opens one photo of a tip (for an authorised police session).
    pub async fn open_attachment(
        &self,
        tip_id: &str,
        attachment_id: &str,
    ) -> Result<Option<Vec<u8>>, IntakeError> {
        let Some(row) = self.store.tip(tip_id).await? else {
            return Ok(None);
        };
        let Some(body) = self.store.attachment_body(tip_id, attachment_id).await? else {
            return Ok(None);
        };
        let key = self.tip_key(&row)?;
        Ok(Some(
            key.open(&format!("attachment:{attachment_id}"), &body)?,
        ))
    }
}
