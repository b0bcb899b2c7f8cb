-- The cloud's identity: one row, written at the first start. The data directory keeps the same
-- id (DATA_DIR/cloud-id); kumod refuses to start when the two disagree, so a data directory is
-- never reconciled against another cloud's (or an empty) database. See kumo-store/src/cloud.rs.
CREATE TABLE cloud (
    id TEXT PRIMARY KEY,
    time_created TEXT NOT NULL
);
