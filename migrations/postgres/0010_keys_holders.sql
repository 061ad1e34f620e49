-- Every serving process says here which keys it holds, so that `tinbao keys rewrap` and
-- `keys retire` can tell whether the running servers have caught up with the key file.
-- One row per process (a random id), refreshed by a heartbeat, deleted on a clean stop;
-- a row whose heartbeat is older than a few beats belongs to a process that is gone.
CREATE TABLE key_holders (
    process_id TEXT PRIMARY KEY,
    -- host and pid, for the operator reading `tinbao keys status`
    label TEXT NOT NULL,
    -- the KEK that wraps this process's new tips
    current_key TEXT NOT NULL,
    -- every KEK id it holds, comma-separated
    known_keys TEXT NOT NULL,
    -- KEK ids under which it has new tips wrapped and not yet written, comma-separated
    wrapping_keys TEXT NOT NULL,
    -- when it made current_key its current key (ms)
    switched_at BIGINT NOT NULL,
    started_at BIGINT NOT NULL,
    heartbeat_at BIGINT NOT NULL
);

-- KEK ids removed by `tinbao keys retire`: never current again in any process.
CREATE TABLE retired_keys (
    key_id TEXT PRIMARY KEY,
    retired_at BIGINT NOT NULL
);
