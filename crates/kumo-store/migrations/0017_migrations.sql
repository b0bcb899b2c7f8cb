-- Issue 13 part 6: cold migration and host drain. A move of an instance to another host is a
-- persisted intent, driven phase by phase by the background reconciler of the lease holder:
-- 'exporting' (stop the guest, stage its root disk on the source) → 'copying' (chunks to the
-- target, verified there) → commit (the instance row takes the target host in the same
-- transaction) → 'cleaning' (the source's disk removed) → 'done'; or, before the commit,
-- → 'rolling_back' (the target's copy removed) → 'rolled_back'. 'refused': a drain could not
-- start a move (no target), kept so the drain does not try it again. Capacity on the target is
-- reserved in the transaction that inserts the row. At most one open move per instance.
CREATE TABLE migrations (
    id TEXT PRIMARY KEY,
    instance_id TEXT NOT NULL REFERENCES instances (id),
    source_host_id TEXT NOT NULL REFERENCES hosts (id),
    target_host_id TEXT REFERENCES hosts (id),
    phase TEXT NOT NULL,
    was_running BIGINT NOT NULL,
    drain BIGINT NOT NULL DEFAULT 0,
    disk_bytes BIGINT,
    disk_sha256 TEXT,
    reason TEXT,
    time_created TEXT NOT NULL,
    time_modified TEXT NOT NULL,
    time_finished TEXT
);
CREATE UNIQUE INDEX migrations_open ON migrations (instance_id) WHERE time_finished IS NULL;
CREATE INDEX migrations_source ON migrations (source_host_id, time_created);

-- A host's last drain: 'draining', 'done' or 'incomplete' (NULL: none, or uncordoned since).
ALTER TABLE hosts ADD COLUMN drain_state TEXT;
ALTER TABLE hosts ADD COLUMN drain_started TEXT;
ALTER TABLE hosts ADD COLUMN drain_finished TEXT;
ALTER TABLE hosts ADD COLUMN drain_reason TEXT;
