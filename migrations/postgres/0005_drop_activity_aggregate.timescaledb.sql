-- The continuous aggregate history_activity_1m (0003) was read by nothing: the history API's
-- aggregates read the hub's own 1-minute rollup (history_1m), which already counts rows per
-- vehicle and minute and covers every numeric field. Its refresh job cost a materialisation
-- every minute for no reader; dropping the view drops its jobs too.
DROP MATERIALIZED VIEW IF EXISTS history_activity_1m;
