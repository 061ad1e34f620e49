-- Pseudonyms that do not link (issue 11, point 7). A broadcast subscription's pseudonym
-- is now derived under a key of its own, so that it never equals the same person's
-- pseudonym in tip_contacts, chat_sessions or the inbox. Re-keying the existing rows needs
-- the key file, so the server does it once at start-up (marked in `meta` as
-- 'subscriber_pseudonyms_v2'); this file only prepares the tables.

-- A broadcast message keeps its subscriber's village, so that an opted-out subscriber's
-- row can be deleted while the broadcast's results still count the message.
ALTER TABLE outbox ADD COLUMN village_id BIGINT;
UPDATE outbox SET village_id = (SELECT s.village_id FROM subscribers s WHERE s.id = outbox.subscriber_id)
    WHERE subscriber_id IS NOT NULL;

-- Opting out now deletes the subscription: no pseudonym and village kept for ever.
DELETE FROM subscribers WHERE status = 'opted_out';
