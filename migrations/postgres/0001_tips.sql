-- Administrative units (shipped list) and the villages each commune adds.
CREATE TABLE provinces (
    code BIGINT PRIMARY KEY,
    name TEXT NOT NULL,
    kind TEXT NOT NULL
);
CREATE TABLE communes (
    code BIGINT PRIMARY KEY,
    province_code BIGINT NOT NULL REFERENCES provinces(code),
    name TEXT NOT NULL,
    kind TEXT NOT NULL
);
CREATE INDEX communes_by_province ON communes (province_code, name);
CREATE TABLE villages (
    id BIGSERIAL PRIMARY KEY,
    commune_code BIGINT NOT NULL REFERENCES communes(code),
    name TEXT NOT NULL,
    UNIQUE (commune_code, name)
);

-- Proof that the KEKs and the MAC key in the key file are the ones the data was sealed with.
CREATE TABLE key_checks (
    key_id TEXT PRIMARY KEY,
    check_value BYTEA NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE TABLE meta (
    name TEXT PRIMARY KEY,
    value BYTEA NOT NULL
);

-- Queue metadata in clear; everything a tipster wrote is sealed with the tip's data key.
CREATE TABLE tips (
    id TEXT PRIMARY KEY,
    receipt_mac BYTEA NOT NULL UNIQUE,
    channel TEXT NOT NULL,
    category TEXT NOT NULL,
    priority BIGINT NOT NULL,
    status TEXT NOT NULL,
    outcome TEXT,
    happening_now BOOLEAN NOT NULL,
    province_code BIGINT,
    commune_code BIGINT,
    village_id BIGINT REFERENCES villages(id),
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    due_at BIGINT NOT NULL,
    key_id TEXT NOT NULL,
    wrapped_key BYTEA,
    description BYTEA NOT NULL,
    place_details BYTEA,
    village_text BYTEA,
    occurred_at BYTEA,
    contact BYTEA
);
CREATE INDEX tips_commune_queue ON tips (commune_code, status, priority, due_at);
CREATE INDEX tips_province_queue ON tips (province_code, commune_code, status, priority, due_at);
CREATE INDEX tips_by_key ON tips (key_id);

-- The conversation between police and tipster, both ways, sealed.
CREATE TABLE tip_messages (
    id TEXT PRIMARY KEY,
    tip_id TEXT NOT NULL REFERENCES tips(id) ON DELETE CASCADE,
    author TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    body BYTEA NOT NULL
);
CREATE INDEX tip_messages_by_tip ON tip_messages (tip_id, created_at);

-- Photos, stripped of metadata and sealed.
CREATE TABLE attachments (
    id TEXT PRIMARY KEY,
    tip_id TEXT NOT NULL REFERENCES tips(id) ON DELETE CASCADE,
    message_id TEXT REFERENCES tip_messages(id) ON DELETE CASCADE,
    created_at BIGINT NOT NULL,
    content_type TEXT NOT NULL,
    size BIGINT NOT NULL,
    body BYTEA NOT NULL
);
CREATE INDEX attachments_by_tip ON attachments (tip_id, created_at);
