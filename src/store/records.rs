//! The rows the store reads and writes. Sealed fields are opaque bytes here.

/// One line of the shipped administrative-units list.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct AdminUnitRow {
    pub province_code: i64,
    pub province_name: String,
    #[serde(rename = "province_type")]
    pub province_kind: String,
    pub commune_code: i64,
    pub commune_name: String,
    #[serde(rename = "commune_type")]
    pub commune_kind: String,
}

/// A province.
#[derive(Debug, Clone, sqlx::FromRow, serde::Serialize)]
pub struct Province {
    pub code: i64,
    pub name: String,
}

/// A commune or ward.
#[derive(Debug, Clone, sqlx::FromRow, serde::Serialize)]
pub struct Commune {
    pub code: i64,
    pub province_code: i64,
    pub name: String,
}

/// A village (thôn, bản, tổ dân phố…) inside a commune.
#[derive(Debug, Clone, sqlx::FromRow, serde::Serialize)]
pub struct Village {
    pub id: i64,
    pub commune_code: i64,
    pub name: String,
}

/// A tip's wrapped data key, for re-wrapping.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct WrappedKeyRow {
    pub id: String,
    pub key_id: String,
    pub wrapped_key: Vec<u8>,
}

/// A sealed photo to insert.
#[derive(Debug, Clone)]
pub struct NewAttachment {
    pub id: String,
    pub content_type: String,
    pub size: i64,
    pub body: Vec<u8>,
}

/// A new tip, sealed and ready to insert.
#[derive(Debug, Clone)]
pub struct NewTipRecord {
    pub id: String,
    pub receipt_mac: Vec<u8>,
    pub channel: &'static str,
    pub category: &'static str,
    pub priority: i64,
    pub status: &'static str,
    pub happening_now: bool,
    pub province_code: Option<i64>,
    pub commune_code: Option<i64>,
    pub village_id: Option<i64>,
    pub created_at: i64,
    pub due_at: i64,
    pub key_id: String,
    pub wrapped_key: Vec<u8>,
    pub description: Vec<u8>,
    pub place_details: Option<Vec<u8>>,
    pub village_text: Option<Vec<u8>>,
    pub occurred_at: Option<Vec<u8>>,
    pub contact: Option<Vec<u8>>,
    pub attachments: Vec<NewAttachment>,
    /// For a tip that came by chat or SMS: the reply address, the receipt message and
    /// the inbox event, committed with the tip so that none exists without the others.
    pub chat: Option<ChatTipExtras>,
}

impl NewTipRecord {
    /// When it closed: a tip stored closed (a hotline call settled at once) closed as it
    /// came in.
    pub fn closed_at(&self) -> Option<i64> {
        (self.status == "closed").then_some(self.created_at)
    }
}

/// What a chat or SMS tip commits together with the tip itself.
#[derive(Debug, Clone)]
pub struct ChatTipExtras {
    pub contact: NewTipContact,
    pub outbox: Vec<super::NewOutboxRow>,
    /// The inbox event that carried the tip, removed in the same transaction.
    pub inbox_id: Option<i64>,
    /// Photos the tipster sent that could not be fetched or read (MMS): noted on the tip
    /// in the same transaction, so a stored tip never lacks them silently.
    pub photos_missing: i64,
}

/// A tip's reply address as stored: pseudonym, and the address sealed with the tip key.
#[derive(Debug, Clone)]
pub struct NewTipContact {
    pub transport: &'static str,
    pub sender: Vec<u8>,
    pub address: Vec<u8>,
}

/// The columns of [`TipRow`], in order.
pub const TIP_COLUMNS: &str = "id, channel, category, priority, status, outcome, happening_now, \
    province_code, commune_code, village_id, created_at, updated_at, due_at, key_id, wrapped_key, \
    description, place_details, village_text, occurred_at, contact, reward_eligible, assignee_id, \
    duplicate_of, closed_at, destroyed_at, hold_until, hold_by";

/// A stored tip: queue metadata in clear, the rest sealed.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TipRow {
    pub id: String,
    pub channel: String,
    pub category: String,
    pub priority: i64,
    pub status: String,
    pub outcome: Option<String>,
    pub happening_now: bool,
    pub province_code: Option<i64>,
    pub commune_code: Option<i64>,
    pub village_id: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
    pub due_at: i64,
    pub key_id: String,
    pub wrapped_key: Option<Vec<u8>>,
    pub description: Vec<u8>,
    pub place_details: Option<Vec<u8>>,
    pub village_text: Option<Vec<u8>>,
    pub occurred_at: Option<Vec<u8>>,
    pub contact: Option<Vec<u8>>,
    pub reward_eligible: bool,
    /// The officer the tip is assigned to.
    pub assignee_id: Option<String>,
    /// The tip this one duplicates.
    pub duplicate_of: Option<String>,
    /// When it was closed (none while open).
    pub closed_at: Option<i64>,
    /// When its content was destroyed under the retention rules (its counts remain).
    pub destroyed_at: Option<i64>,
    /// Held as evidence until then, by that account: not destroyed meanwhile.
    pub hold_until: Option<i64>,
    pub hold_by: Option<String>,
}

/// A stored message.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct MessageRow {
    pub id: String,
    pub tip_id: String,
    pub author: String,
    pub created_at: i64,
    pub body: Vec<u8>,
}

/// A new message to insert.
#[derive(Debug, Clone)]
pub struct NewMessageRecord {
    pub id: String,
    pub tip_id: String,
    pub author: &'static str,
    pub created_at: i64,
    pub body: Vec<u8>,
    pub attachments: Vec<NewAttachment>,
    /// Deliveries of this message to the tipster's chat or SMS, queued with it.
    pub outbox: Vec<super::NewOutboxRow>,
    /// Photos sent with the message that could not be fetched or read (MMS), noted on
    /// the tip in the message's transaction.
    pub photos_missing: i64,
}

/// An attachment without its bytes.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AttachmentMeta {
    pub id: String,
    pub message_id: Option<String>,
    pub created_at: i64,
    pub content_type: String,
    pub size: i64,
}
