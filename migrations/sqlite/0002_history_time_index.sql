-- Retention deletes the oldest rows of every vehicle at once; without this index each
-- maintenance run would scan the whole table.
CREATE INDEX history_ts ON history (ts);
