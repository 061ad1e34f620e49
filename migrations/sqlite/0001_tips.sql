-- Administrative units (shipped list) and the villages each commune adds.
CREATE TABLE provinces (
    code INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    kind TEXT NOT NULL
);
CREATE TABLE communes (
    code INTEGER PRIMARY KEY,
    province_code INTEGER NOT NULL REFERENCES provinces(code),
    name TEXT NOT NULL,
    kind TEXT NOT NULL
);
CREATE INDEX communes_by_province ON communes (province_code, name);
CREATE TABLE villages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    commune_code INTEGER NOT NULL REFERENCES communes(code),
    name TEXT NOT NULL,
    UNIQUE (commune_code, name)
);

-- Proof that the KEKs and the MAC key in the key file are the ones the data was sealed with.
CREATE TABLE key_checks (
    key_id TEXT PRIMARY KEY,
    check_value BLOB NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE TABLE meta (
    name TEXT PRIMARY KEY,
    value BLOB NOT NULL
);

-- Queue metadata in clear; everything a tipster wrote is sealed with the tip's data key.
CREATE TABLE tips (
    id TEXT PRIMARY KEY,
    receipt_mac BLOB NOT NULL UNIQUE,
    channel TEXT NOT NULL,
    category TEXT NOT NULL,
    priority INTEGER NOT NULL,
    status TEXT NOT NULL,
    outcome TEXT,
    happening_now INTEGER NOT NULL,
    province_code INTEGER,
    commune_code INTEGER,
    village_id INTEGER REFERENCES villages(id),
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    due_at INTEGER NOT NULL,
    key_id TEXT NOT NULL,
    wrapped_key BLOB,
    description BLOB NOT NULL,
    place_details BLOB,
    village_text BLOB,
    occurred_at BLOB,
    contact BLOB
);
CREATE INDEX tips_commune_queue ON tips (commune_code, status, priority, due_at);
CREATE INDEX tips_province_queue ON tips (province_code, commune_code, status, priority, due_at);
CREATE INDEX tips_by_key ON tips (key_id);

-- The conversation between police and tipster, both ways, sealed.
CREATE TABLE tip_messages (
    id TEXT PRIMARY KEY,
    tip_id TEXT NOT NULL REFERENCES tips(id) ON DELETE CASCADE,
    author TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    body BLOB NOT NULL
);
CREATE INDEX tip_messages_by_tip ON tip_messages (tip_id, created_at);

-- Photos, stripped of metadata and sealed.
CREATE TABLE attachments (
    id TEXT PRIMARY KEY,
    tip_id TEXT NOT NULL REFERENCES tips(id) ON DELETE CASCADE,
    message_id TEXT REFERENCES tip_messages(id) ON DELETE CASCADE,
    created_at INTEGER NOT NULL,
    content_type TEXT NOT NULL,
    size INTEGER NOT NULL,
    body BLOB NOT NULL
);
CREATE INDEX attachments_by_tip ON attachments (tip_id, created_at);
