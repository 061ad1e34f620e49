-- Campaign broadcasts of village heads: subscribers, broadcasts, their approval and
-- results, saved templates, per-commune settings, and shared send pacing.

-- A resident who subscribed to a village's campaign messages over one channel. The
-- address (chat id, phone number, email) is sealed and found again only by its keyed
-- pseudonym; it is erased when the person opts out.
CREATE TABLE subscribers (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    village_id INTEGER NOT NULL REFERENCES villages(id),
    commune_code INTEGER NOT NULL,
    transport TEXT NOT NULL,
    sender BLOB NOT NULL,
    address BLOB,
    language TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    UNIQUE (village_id, transport, sender)
);
CREATE INDEX subscribers_by_village ON subscribers (village_id, id);
CREATE INDEX subscribers_by_sender ON subscribers (sender);

-- A campaign message to the subscribers of some villages of one commune. Its texts are
-- public campaign material (one per language, JSON) and stay clear.
CREATE TABLE broadcasts (
    id TEXT PRIMARY KEY,
    commune_code INTEGER NOT NULL,
    author_id TEXT NOT NULL,
    title TEXT NOT NULL,
    texts TEXT NOT NULL,
    transports TEXT NOT NULL,
    villages TEXT NOT NULL,
    status TEXT NOT NULL,
    send_at INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    approved_by TEXT,
    approved_at INTEGER,
    started_at INTEGER,
    fanout_village INTEGER NOT NULL DEFAULT 0,
    fanout_cursor INTEGER NOT NULL DEFAULT 0,
    fanout_until INTEGER NOT NULL DEFAULT 0,
    fanout_done INTEGER NOT NULL DEFAULT 0,
    queued INTEGER NOT NULL DEFAULT 0,
    finished_at INTEGER,
    cancelled_by TEXT,
    cancelled_at INTEGER
);
CREATE INDEX broadcasts_by_commune ON broadcasts (commune_code, created_at);
CREATE INDEX broadcasts_active ON broadcasts (status, send_at);

-- What each broadcast reached, per village and channel, kept for the monthly report.
CREATE TABLE broadcast_results (
    broadcast_id TEXT NOT NULL REFERENCES broadcasts(id),
    village_id INTEGER NOT NULL,
    transport TEXT NOT NULL,
    status TEXT NOT NULL,
    count INTEGER NOT NULL,
    PRIMARY KEY (broadcast_id, village_id, transport, status)
);

-- Saved texts for recurring campaigns.
CREATE TABLE broadcast_templates (
    id TEXT PRIMARY KEY,
    commune_code INTEGER NOT NULL,
    name TEXT NOT NULL,
    title TEXT NOT NULL,
    texts TEXT NOT NULL,
    transports TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX broadcast_templates_by_commune ON broadcast_templates (commune_code, name);

-- A commune's own settings (approval of broadcasts on by default).
CREATE TABLE commune_settings (
    commune_code INTEGER PRIMARY KEY,
    broadcast_approval INTEGER NOT NULL DEFAULT 1,
    updated_at INTEGER NOT NULL
);

-- The next free send slot per transport (microseconds), shared by every process so that
-- together they never exceed a provider's rate.
CREATE TABLE send_pacing (
    transport TEXT PRIMARY KEY,
    next_at INTEGER NOT NULL
);

-- Broadcast messages in the outbox: the row names its broadcast and subscriber; the
-- text and the address are read at send time (so an opt-out or a cancellation counts at
-- once), never copied.
ALTER TABLE outbox ADD COLUMN broadcast_id TEXT;
ALTER TABLE outbox ADD COLUMN subscriber_id INTEGER;
ALTER TABLE outbox ADD COLUMN delivered_at INTEGER;
CREATE INDEX outbox_by_broadcast ON outbox (broadcast_id, status) WHERE broadcast_id IS NOT NULL;
CREATE INDEX outbox_by_provider_id ON outbox (provider_id) WHERE provider_id IS NOT NULL;
