-- Chat and SMS channels: the durable inbox of provider events, retry de-duplication, the
-- bots' sealed dialog state, tipsters' sealed reply addresses, and the durable outbox.

-- Events a webhook or the Telegram poller accepted, kept until processed. Everything a
-- person sent is sealed; the sender is only a keyed pseudonym.
CREATE TABLE inbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    ref TEXT NOT NULL UNIQUE,
    transport TEXT NOT NULL,
    sender BLOB NOT NULL,
    received_at INTEGER NOT NULL,
    claimed_until INTEGER NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL DEFAULT 0,
    event BLOB NOT NULL
);
CREATE INDEX inbox_by_sender ON inbox (sender, id);

-- Keyed hashes of provider message ids (or of sender + content where a provider has no
-- unique id), so a provider's retry yields one tip.
CREATE TABLE inbound_seen (
    key BLOB PRIMARY KEY,
    seen_at INTEGER NOT NULL
);
CREATE INDEX inbound_seen_by_time ON inbound_seen (seen_at);

-- A person's conversation with a bot, sealed, forgotten 24 hours after the last message.
CREATE TABLE chat_sessions (
    sender BLOB PRIMARY KEY,
    transport TEXT NOT NULL,
    version INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    state BLOB NOT NULL
);
CREATE INDEX chat_sessions_by_time ON chat_sessions (updated_at);

-- How to answer the tipster of an open tip over its channel: a pseudonym to recognise
-- them, the address sealed with the tip's key. Erased when the tip closes.
CREATE TABLE tip_contacts (
    tip_id TEXT PRIMARY KEY REFERENCES tips(id) ON DELETE CASCADE,
    transport TEXT NOT NULL,
    sender BLOB NOT NULL,
    address BLOB NOT NULL,
    created_at INTEGER NOT NULL,
    last_inbound_at INTEGER NOT NULL
);
CREATE INDEX tip_contacts_by_sender ON tip_contacts (sender, created_at);

-- Outgoing chat and SMS messages. Recipient and text are sealed and erased once the
-- message is settled (sent, failed or cancelled).
CREATE TABLE outbox (
    id TEXT PRIMARY KEY,
    transport TEXT NOT NULL,
    priority INTEGER NOT NULL,
    status TEXT NOT NULL,
    tip_id TEXT REFERENCES tips(id) ON DELETE CASCADE,
    message_id TEXT,
    recipient BLOB,
    body BLOB,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    claimed_until INTEGER NOT NULL DEFAULT 0,
    provider_id TEXT,
    last_error TEXT,
    created_at INTEGER NOT NULL,
    settled_at INTEGER
);
CREATE INDEX outbox_due ON outbox (priority, next_attempt_at) WHERE status = 'queued';
CREATE INDEX outbox_by_tip ON outbox (tip_id) WHERE tip_id IS NOT NULL;
