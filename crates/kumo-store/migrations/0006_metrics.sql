-- Per-instance metrics at three resolutions (see docs/monitoring.md). One wide row per instance
-- and time: cpu (percent of one host CPU), memory (bytes), disk and network rates (bytes/s).
-- `time` is fixed-width RFC 3339 text like every other time; at 1-minute and 1-hour resolution it
-- is the start of the interval and the values are means over it.
-- Portable SQL (SQLite and PostgreSQL). No foreign keys: the monitoring task writes a round of
-- samples in one batch, and rows of deleted instances simply age out with the retention.

-- Raw samples, one per sampling round (kept 1 hour).
CREATE TABLE metrics_raw (
    instance_id TEXT NOT NULL,
    time TEXT NOT NULL,
    cpu DOUBLE PRECISION NOT NULL,
    memory DOUBLE PRECISION NOT NULL,
    disk_read DOUBLE PRECISION NOT NULL,
    disk_write DOUBLE PRECISION NOT NULL,
    net_rx DOUBLE PRECISION NOT NULL,
    net_tx DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (instance_id, time)
);
CREATE INDEX metrics_raw_time ON metrics_raw (time);

-- 1-minute means (kept 1 day).
CREATE TABLE metrics_1m (
    instance_id TEXT NOT NULL,
    time TEXT NOT NULL,
    cpu DOUBLE PRECISION NOT NULL,
    memory DOUBLE PRECISION NOT NULL,
    disk_read DOUBLE PRECISION NOT NULL,
    disk_write DOUBLE PRECISION NOT NULL,
    net_rx DOUBLE PRECISION NOT NULL,
    net_tx DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (instance_id, time)
);
CREATE INDEX metrics_1m_time ON metrics_1m (time);

-- 1-hour means (kept 30 days).
CREATE TABLE metrics_1h (
    instance_id TEXT NOT NULL,
    time TEXT NOT NULL,
    cpu DOUBLE PRECISION NOT NULL,
    memory DOUBLE PRECISION NOT NULL,
    disk_read DOUBLE PRECISION NOT NULL,
    disk_write DOUBLE PRECISION NOT NULL,
    net_rx DOUBLE PRECISION NOT NULL,
    net_tx DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (instance_id, time)
);
CREATE INDEX metrics_1h_time ON metrics_1h (time);

-- How far each coarser resolution has been computed: intervals before done_until are final.
CREATE TABLE metrics_rollups (
    resolution TEXT PRIMARY KEY,
    done_until TEXT NOT NULL
);
