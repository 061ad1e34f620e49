-- Chat and SMS channels: the durable inbox of provider events, retry de-duplication, the
-- bots' sealed dialog state, tipsters' sealed reply addresses, and the durable outbox.

-- Events a webhook or the Telegram poller accepted, kept until processed. Everything a
-- person sent is sealed; the sender is only a keyed pseudonym.
CREATE TABLE inbox (
    id BIGSERIAL PRIMARY KEY,
    ref TEXT NOT NULL UNIQUE,
    transport TEXT NOT NULL,
    sender BYTEA NOT NULL,
    received_at BIGINT NOT NULL,
    claimed_until BIGINT NOT NULL DEFAULT 0,
    attempts BIGINT NOT NULL DEFAULT 0,
    event BYTEA NOT NULL
);
CREATE INDEX inbox_by_sender ON inbox (sender, id);

-- Keyed hashes of provider message ids (or of sender + content where a provider has no
-- unique id), so a provider's retry yields one tip.
CREATE TABLE inbound_seen (
    key BYTEA PRIMARY KEY,
    seen_at BIGINT NOT NULL
);
CREATE INDEX inbound_seen_by_time ON inbound_seen (seen_at);

-- A person's conversation with a bot, sealed, forgotten 24 hours after the last message.
CREATE TABLE chat_sessions (
    sender BYTEA PRIMARY KEY,
    transport TEXT NOT NULL,
    version BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    state BYTEA NOT NULL
);
CREATE INDEX chat_sessions_by_time ON chat_sessions (updated_at);

-- How to answer the tipster of an open tip over its channel: a pseudonym to recognise
-- them, the address sealed with the tip's key. Erased when the tip closes.
CREATE TABLE tip_contacts (
    tip_id TEXT PRIMARY KEY REFERENCES tips(id) ON DELETE CASCADE,
    transport TEXT NOT NULL,
    sender BYTEA NOT NULL,
    address BYTEA NOT NULL,
    created_at BIGINT NOT NULL,
    last_inbound_at BIGINT NOT NULL
);
CREATE INDEX tip_contacts_by_sender ON tip_contacts (sender, created_at);

-- Outgoing chat and SMS messages. Recipient and text are sealed and erased once the
-- message is settled (sent, failed or cancelled).
CREATE TABLE outbox (
    id TEXT PRIMARY KEY,
    transport TEXT NOT NULL,
    priority BIGINT NOT NULL,
    status TEXT NOT NULL,
    tip_id TEXT REFERENCES tips(id) ON DELETE CASCADE,
    message_id TEXT,
    recipient BYTEA,
    body BYTEA,
    attempts BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    claimed_until BIGINT NOT NULL DEFAULT 0,
    provider_id TEXT,
    last_error TEXT,
    created_at BIGINT NOT NULL,
    settled_at BIGINT
);
CREATE INDEX outbox_due ON outbox (priority, next_attempt_at) WHERE status = 'queued';
CREATE INDEX outbox_by_tip ON outbox (tip_id) WHERE tip_id IS NOT NULL;
