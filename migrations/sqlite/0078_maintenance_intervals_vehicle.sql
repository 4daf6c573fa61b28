-- Worker mode reads intervals by vehicle (those a due list shows, or one vehicle asked about);
-- the primary key leads with the schedule.
CREATE INDEX IF NOT EXISTS maintenance_intervals_vehicle ON maintenance_intervals (vehicle_id);
