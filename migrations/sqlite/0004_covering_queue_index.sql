-- The open-tips index holds every column a queue line shows and every filter, so a page
-- reads only the index: a filter (category, village, channel, assignee) is tested on the
-- index entry instead of a table row for each open tip it passes.
DROP INDEX tips_open_queue;
CREATE INDEX tips_open_queue ON tips (commune_code, priority, due_at, id, status, category,
    village_id, channel, assignee_id, happening_now, province_code, created_at, reward_eligible)
    WHERE status <> 'closed';
