-- Native partitioning never had the continuous aggregate that 0005 drops in TimescaleDB mode;
-- this keeps both modes' migration numbers the same.
SELECT 1;
