-- Retention (issue 14): a closed tip's content is destroyed a set time after it closed,
-- unless an officer holds it as evidence. When it closed (tips closed before this column
-- existed take their last change), when its content was destroyed, and the hold: until
-- when, by whom, and its reason sealed with the tip's key (destroyed with it).
ALTER TABLE tips ADD COLUMN closed_at INTEGER;
ALTER TABLE tips ADD COLUMN destroyed_at INTEGER;
ALTER TABLE tips ADD COLUMN hold_until INTEGER;
ALTER TABLE tips ADD COLUMN hold_by TEXT;
ALTER TABLE tips ADD COLUMN hold_reason BLOB;
UPDATE tips SET closed_at = updated_at WHERE status = 'closed';
-- The retention job's walk: closed tips whose content is still there, oldest first.
CREATE INDEX tips_retention ON tips (closed_at) WHERE closed_at IS NOT NULL AND destroyed_at IS NULL;
-- A chief's retention per category, in months (the configuration's default elsewhere).
CREATE TABLE retention_settings (
    commune_code INTEGER NOT NULL,
    category TEXT NOT NULL,
    months INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (commune_code, category)
);
-- The day's retention pass, taken by one process of many.
CREATE TABLE retention_runs (
    day TEXT PRIMARY KEY,
    started_at INTEGER NOT NULL,
    destroyed INTEGER NOT NULL DEFAULT 0
);
