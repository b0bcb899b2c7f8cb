-- Kumo core schema. Portable SQL: it runs unchanged on SQLite and PostgreSQL.
-- Ids are UUIDv7 text (time-ordered), times RFC 3339 UTC text with microseconds (sortable).
-- Soft delete (time_deleted) where history matters; names unique per parent among live rows.

CREATE TABLE projects (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    description TEXT NOT NULL,
    time_created TEXT NOT NULL,
    time_modified TEXT NOT NULL,
    time_deleted TEXT
);
CREATE UNIQUE INDEX projects_name_live ON projects (name) WHERE time_deleted IS NULL;

CREATE TABLE hosts (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    description TEXT NOT NULL,
    time_created TEXT NOT NULL,
    time_modified TEXT NOT NULL,
    driver TEXT NOT NULL,
    accelerator TEXT NOT NULL,
    accelerator_reason TEXT NOT NULL,
    vcpus_total BIGINT NOT NULL,
    memory_mib_total BIGINT NOT NULL,
    disk_gib_total BIGINT NOT NULL,
    gpus_total BIGINT NOT NULL,
    vcpus_used BIGINT NOT NULL DEFAULT 0,
    memory_mib_used BIGINT NOT NULL DEFAULT 0,
    disk_gib_used BIGINT NOT NULL DEFAULT 0,
    gpus_used BIGINT NOT NULL DEFAULT 0,
    vcpus_limit BIGINT NOT NULL,
    memory_mib_limit BIGINT NOT NULL,
    disk_gib_limit BIGINT NOT NULL,
    cpu_overcommit DOUBLE PRECISION NOT NULL,
    memory_overcommit DOUBLE PRECISION NOT NULL,
    disk_overcommit DOUBLE PRECISION NOT NULL,
    time_deleted TEXT
);
CREATE UNIQUE INDEX hosts_name_live ON hosts (name) WHERE time_deleted IS NULL;

CREATE TABLE images (
    id TEXT PRIMARY KEY,
    project_id TEXT REFERENCES projects (id),
    name TEXT NOT NULL,
    description TEXT NOT NULL,
    time_created TEXT NOT NULL,
    time_modified TEXT NOT NULL,
    os TEXT NOT NULL,
    boot TEXT NOT NULL,
    disk_path TEXT NOT NULL,
    kernel_path TEXT,
    initrd_path TEXT,
    cmdline TEXT,
    size_bytes BIGINT NOT NULL,
    time_deleted TEXT
);
CREATE UNIQUE INDEX images_name_live ON images (COALESCE(project_id, ''), name) WHERE time_deleted IS NULL;

CREATE TABLE instance_types (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    description TEXT NOT NULL,
    time_created TEXT NOT NULL,
    time_modified TEXT NOT NULL,
    vcpus BIGINT NOT NULL,
    memory_mib BIGINT NOT NULL,
    disk_gib BIGINT NOT NULL,
    gpus BIGINT NOT NULL,
    time_deleted TEXT
);
CREATE UNIQUE INDEX instance_types_name_live ON instance_types (name) WHERE time_deleted IS NULL;

CREATE TABLE instances (
    id TEXT PRIMARY KEY,
    project_id TEXT NOT NULL REFERENCES projects (id),
    name TEXT NOT NULL,
    description TEXT NOT NULL,
    time_created TEXT NOT NULL,
    time_modified TEXT NOT NULL,
    image_id TEXT NOT NULL REFERENCES images (id),
    instance_type_id TEXT NOT NULL REFERENCES instance_types (id),
    host_id TEXT NOT NULL REFERENCES hosts (id),
    vcpus BIGINT NOT NULL,
    memory_mib BIGINT NOT NULL,
    disk_gib BIGINT NOT NULL,
    gpus BIGINT NOT NULL,
    state TEXT NOT NULL,
    state_reason TEXT,
    user_data TEXT,
    generation BIGINT NOT NULL,
    time_deleted TEXT
);
CREATE UNIQUE INDEX instances_name_live ON instances (project_id, name) WHERE time_deleted IS NULL;
CREATE INDEX instances_project_id_live ON instances (project_id, id) WHERE time_deleted IS NULL;
CREATE INDEX instances_host_live ON instances (host_id, state) WHERE time_deleted IS NULL;
CREATE INDEX instances_image_live ON instances (image_id) WHERE time_deleted IS NULL;
CREATE INDEX instances_type_live ON instances (instance_type_id) WHERE time_deleted IS NULL;

CREATE TABLE events (
    id TEXT PRIMARY KEY,
    time_created TEXT NOT NULL,
    project_id TEXT,
    resource_type TEXT NOT NULL,
    resource_id TEXT NOT NULL,
    resource_name TEXT NOT NULL,
    kind TEXT NOT NULL,
    from_state TEXT,
    to_state TEXT,
    cause TEXT NOT NULL
);
CREATE INDEX events_project ON events (project_id, id);
CREATE INDEX events_resource ON events (resource_id, id);

CREATE TABLE api_tokens (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    token_hash TEXT NOT NULL,
    kind TEXT NOT NULL,
    time_created TEXT NOT NULL,
    time_expires TEXT,
    time_last_used TEXT,
    time_revoked TEXT
);
CREATE UNIQUE INDEX api_tokens_hash ON api_tokens (token_hash);
