-- Provider events as they arrive (issue 15): a webhook's answer waits only for this
-- append. Its de-duplication key (a keyed hash) and sender pseudonym are random, and
-- placing each in its index (inbound_seen's key, inbox_by_sender) as it came wrote about
-- two random pages an event, the most of what a flood of webhooks cost. The chat
-- processor moves arrivals into the inbox in large batches, oldest first: a retry found
-- then is dropped, the others keep their order.
CREATE TABLE inbox_arrivals (
    id BIGSERIAL PRIMARY KEY,
    ref TEXT NOT NULL,
    transport TEXT NOT NULL,
    sender BYTEA NOT NULL,
    received_at BIGINT NOT NULL,
    event BYTEA NOT NULL,
    dedupe_key BYTEA NOT NULL,
    dedupe_after BIGINT NOT NULL
);
