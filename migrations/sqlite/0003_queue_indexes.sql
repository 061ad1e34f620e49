-- Open tips are a small share of a commune's history: the queue, its filters and its
-- counts read a partial index of open tips only (status last, so counting is covered).
CREATE INDEX tips_open_queue ON tips (commune_code, priority, due_at, id, status) WHERE status <> 'closed';
CREATE INDEX tips_open_by_province ON tips (province_code, commune_code, due_at, status) WHERE status <> 'closed';
