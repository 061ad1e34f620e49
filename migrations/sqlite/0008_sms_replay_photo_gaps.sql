-- SMS webhooks: replay memory, and photos a tip should have had but did not get.

-- Keyed hashes of the provider message ids of accepted webhooks (Twilio's MessageSid),
-- kept far longer than inbound_seen's retry window: a signed request carries no time, so
-- a captured one replayed later is recognised here and answered with no effect. Rows
-- are purged once older than the replay memory.
CREATE TABLE webhook_replay (
    key BLOB PRIMARY KEY,
    seen_at INTEGER NOT NULL
);
CREATE INDEX webhook_replay_by_time ON webhook_replay (seen_at);

-- Photos a tipster sent (an MMS's media) that could not be fetched or read, counted per
-- tip, so the officer sees on the tip that some are missing. Counts only, no content.
CREATE TABLE photo_gaps (
    id TEXT PRIMARY KEY,
    tip_id TEXT NOT NULL REFERENCES tips(id) ON DELETE CASCADE,
    missing INTEGER NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX photo_gaps_by_tip ON photo_gaps (tip_id, created_at);
