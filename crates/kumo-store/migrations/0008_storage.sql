-- Block storage: volumes (disks that outlive instances).
-- A volume is attached to at most one instance (instance_id); the state machine is in
-- kumo-types (volume.rs). source_kind/source_id say what it was made from (the pool keeps the
-- copy-on-write chain; the row keeps the dependency so the image cannot be deleted under it).
CREATE TABLE volumes (
    id TEXT PRIMARY KEY,
    project_id TEXT NOT NULL REFERENCES projects (id),
    name TEXT NOT NULL,
    description TEXT NOT NULL,
    time_created TEXT NOT NULL,
    time_modified TEXT NOT NULL,
    size_gib BIGINT NOT NULL,
    state TEXT NOT NULL,
    state_reason TEXT,
    instance_id TEXT REFERENCES instances (id),
    encrypted BIGINT NOT NULL,
    source_kind TEXT NOT NULL,
    source_id TEXT,
    source_name TEXT,
    iops_limit BIGINT,
    bandwidth_mib_s BIGINT,
    generation BIGINT NOT NULL,
    time_deleted TEXT
);
CREATE UNIQUE INDEX volumes_name_live ON volumes (project_id, name) WHERE time_deleted IS NULL;
CREATE INDEX volumes_project_live ON volumes (project_id, id) WHERE time_deleted IS NULL;
CREATE INDEX volumes_instance_live ON volumes (instance_id) WHERE time_deleted IS NULL;
CREATE INDEX volumes_source_live ON volumes (source_id) WHERE time_deleted IS NULL;

-- Snapshots: a read-only layer of a volume's qcow2 chain, taken at one instant. Deleting a
-- snapshot removes the row; its layer stays in the pool while any volume's chain still uses it.
CREATE TABLE snapshots (
    id TEXT PRIMARY KEY,
    project_id TEXT NOT NULL REFERENCES projects (id),
    name TEXT NOT NULL,
    description TEXT NOT NULL,
    time_created TEXT NOT NULL,
    time_modified TEXT NOT NULL,
    volume_id TEXT NOT NULL REFERENCES volumes (id),
    volume_name TEXT NOT NULL,
    size_gib BIGINT NOT NULL,
    time_deleted TEXT
);
CREATE UNIQUE INDEX snapshots_name_live ON snapshots (project_id, name) WHERE time_deleted IS NULL;
CREATE INDEX snapshots_project_live ON snapshots (project_id, id) WHERE time_deleted IS NULL;

-- Volume backups: a manifest of content-addressed chunks in the backup target. Every backup is
-- complete on its own; `kind` says whether it was the volume's first (full) or a later one
-- (incremental: it stored only the chunks that changed), `bytes_stored` what it added.
CREATE TABLE volume_backups (
    id TEXT PRIMARY KEY,
    project_id TEXT NOT NULL REFERENCES projects (id),
    name TEXT NOT NULL,
    description TEXT NOT NULL,
    time_created TEXT NOT NULL,
    time_modified TEXT NOT NULL,
    volume_id TEXT NOT NULL REFERENCES volumes (id),
    volume_name TEXT NOT NULL,
    size_gib BIGINT NOT NULL,
    encrypted BIGINT NOT NULL,
    kind TEXT NOT NULL,
    chunks BIGINT NOT NULL,
    bytes_stored BIGINT NOT NULL,
    time_deleted TEXT
);
CREATE UNIQUE INDEX volume_backups_name_live ON volume_backups (project_id, name) WHERE time_deleted IS NULL;
CREATE INDEX volume_backups_project_live ON volume_backups (project_id, id) WHERE time_deleted IS NULL;
CREATE INDEX volume_backups_volume ON volume_backups (volume_id);
