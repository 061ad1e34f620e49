-- Reports (issue 13): when the police first acted on a tip (a status change from new, a
-- message to the tipster, a transfer, a duplicate), for "share acted on within the
-- deadline" and the time to first action. Tips acted on before this column existed take
-- their last change as a stand-in.
ALTER TABLE tips ADD COLUMN first_action_at BIGINT;
UPDATE tips SET first_action_at = updated_at WHERE status <> 'new';
-- A commune's tips by the time they came in, with every column a report counts, so that
-- the monthly report is one range scan of this index and never reads the (sealed, wide)
-- rows themselves.
CREATE INDEX tips_commune_created ON tips (commune_code, created_at, category, channel, village_id,
    priority, status, outcome, reward_eligible, due_at, first_action_at);
-- The province view: every commune of a province, by the time tips came in, the same way.
CREATE INDEX tips_province_created ON tips (province_code, created_at, commune_code, category,
    channel, village_id, priority, status, outcome, reward_eligible, due_at, first_action_at);
-- Subscriptions ended, counted per village, channel and day (Vietnam time) for the
-- reports' "subscribers lost": an opted-out subscription's row is deleted with its
-- pseudonym and address, so only this count remains of it.
CREATE TABLE subscriber_losses (
    village_id BIGINT NOT NULL,
    commune_code BIGINT NOT NULL,
    transport TEXT NOT NULL,
    day BIGINT NOT NULL,
    count BIGINT NOT NULL,
    PRIMARY KEY (village_id, transport, day)
);
CREATE INDEX subscriber_losses_by_commune ON subscriber_losses (commune_code, day);
-- The drug-free village tracker: each assessment of a village against plan 000's three
-- criteria (met, not_met or unknown), its pledges, who assessed it and when, and a note
-- sealed under the server's record key. The latest assessment is the village's state;
-- the others are its history.
CREATE TABLE village_assessments (
    id TEXT PRIMARY KEY,
    village_id BIGINT NOT NULL REFERENCES villages(id),
    commune_code BIGINT NOT NULL,
    assessed_on TEXT NOT NULL,
    no_users TEXT NOT NULL,
    no_offences TEXT NOT NULL,
    no_venues TEXT NOT NULL,
    village_pledge BIGINT NOT NULL,
    households_pledged BIGINT NOT NULL,
    cultivation_risk BIGINT NOT NULL,
    cultivation_pledge BIGINT NOT NULL,
    assessor_id TEXT NOT NULL,
    note BYTEA,
    created_at BIGINT NOT NULL
);
CREATE INDEX village_assessments_by_commune ON village_assessments (commune_code, village_id, created_at);
-- The commune's target share of drug-free villages, in percent (plan 004: 50 % by 2030).
ALTER TABLE commune_settings ADD COLUMN drugfree_target BIGINT NOT NULL DEFAULT 50;
-- The monthly report emails sent: one row per commune and month, written before the
-- email goes (so that of several processes exactly one sends it) and removed again if
-- it could not be sent (the next pass tries again).
CREATE TABLE report_mailings (
    commune_code BIGINT NOT NULL,
    month TEXT NOT NULL,
    sent_at BIGINT NOT NULL,
    PRIMARY KEY (commune_code, month)
);
-- Follow-up messages by the time they were written: the report counts a period's
-- messages without walking every tip of the commune.
CREATE INDEX tip_messages_by_time ON tip_messages (created_at);
