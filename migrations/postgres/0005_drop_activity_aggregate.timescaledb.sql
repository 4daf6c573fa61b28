-- Databases created before this migration have a continuous aggregate, history_activity_1m,
-- that 0003 used to create and nothing read: the history API's aggregates read the hub's own
-- 1-minute rollup (history_1m), which already counts rows per vehicle and minute and covers
-- every numeric field. Its refresh job cost a materialisation every minute for no reader;
-- dropping the view drops its jobs too. New databases never create it.
DROP MATERIALIZED VIEW IF EXISTS history_activity_1m;
