-- The police console: accounts, sessions, login throttling, the audit chain, and the
-- triage fields of a tip.
ALTER TABLE tips ADD COLUMN assignee_id TEXT;
ALTER TABLE tips ADD COLUMN duplicate_of TEXT;
ALTER TABLE tips ADD COLUMN reward_eligible BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE tips ADD COLUMN overdue_alerted_at BIGINT;
CREATE INDEX tips_commune_order ON tips (commune_code, priority, due_at, id);
CREATE INDEX tips_due ON tips (due_at) WHERE overdue_alerted_at IS NULL AND status <> 'closed';

CREATE TABLE accounts (
    id TEXT PRIMARY KEY,
    username TEXT NOT NULL UNIQUE,
    display_name TEXT NOT NULL,
    email TEXT,
    role TEXT NOT NULL,
    province_code BIGINT,
    commune_code BIGINT,
    village_id BIGINT,
    password_hash TEXT NOT NULL,
    must_change_password BOOLEAN NOT NULL,
    totp_secret BYTEA,
    totp_confirmed BOOLEAN NOT NULL DEFAULT FALSE,
    totp_last_step BIGINT NOT NULL DEFAULT 0,
    disabled BOOLEAN NOT NULL DEFAULT FALSE,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX accounts_by_commune ON accounts (commune_code, role);

CREATE TABLE sessions (
    token_hash BYTEA PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    stage TEXT NOT NULL,
    csrf TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    last_seen_at BIGINT NOT NULL
);
CREATE INDEX sessions_by_account ON sessions (account_id);

-- Failed logins per account and per client (a daily-keyed hash), shared by every process.
CREATE TABLE login_failures (
    key BYTEA PRIMARY KEY,
    failures BIGINT NOT NULL,
    first_at BIGINT NOT NULL,
    locked_until BIGINT
);

-- Internal police notes, sealed with the tip's data key.
CREATE TABLE tip_notes (
    id TEXT PRIMARY KEY,
    tip_id TEXT NOT NULL REFERENCES tips(id) ON DELETE CASCADE,
    author_id TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    body BYTEA NOT NULL
);
CREATE INDEX tip_notes_by_tip ON tip_notes (tip_id, created_at);

-- Append-only audit log; each entry holds the hash of the previous one.
CREATE TABLE audit_log (
    seq BIGINT PRIMARY KEY,
    at BIGINT NOT NULL,
    actor_id TEXT,
    action TEXT NOT NULL,
    tip_id TEXT,
    province_code BIGINT,
    commune_code BIGINT,
    detail TEXT NOT NULL,
    prev_hash BYTEA NOT NULL,
    hash BYTEA NOT NULL
);
CREATE INDEX audit_by_tip ON audit_log (tip_id, seq);
CREATE INDEX audit_by_commune ON audit_log (commune_code, seq);
