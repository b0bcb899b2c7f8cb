-- Tenancy and pay-as-you-go: users, project membership and roles, per-user API tokens, quotas,
-- the audit log, prices, invoices and budgets. Portable SQL (SQLite and PostgreSQL).

CREATE TABLE users (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    -- 1 for cloud operators (global admins), 0 for tenant users.
    is_operator BIGINT NOT NULL DEFAULT 0,
    time_created TEXT NOT NULL,
    time_modified TEXT NOT NULL,
    time_deleted TEXT
);
CREATE UNIQUE INDEX users_name_live ON users (name) WHERE time_deleted IS NULL;

-- Tokens now belong to a user (NULL: the bootstrap operator token). kind: operator | user | session.
ALTER TABLE api_tokens ADD COLUMN user_id TEXT REFERENCES users (id);
CREATE INDEX api_tokens_user ON api_tokens (user_id, name);

CREATE TABLE project_members (
    project_id TEXT NOT NULL REFERENCES projects (id),
    user_id TEXT NOT NULL REFERENCES users (id),
    -- owner | collaborator | viewer
    role TEXT NOT NULL,
    time_created TEXT NOT NULL,
    PRIMARY KEY (project_id, user_id)
);
CREATE INDEX project_members_user ON project_members (user_id, project_id);

-- Limits (NULL = unlimited) and what is charged against them, updated in the same transaction as
-- the allocation with a conditional UPDATE (like host capacity), so concurrent creates cannot overshoot.
CREATE TABLE project_quotas (
    project_id TEXT PRIMARY KEY REFERENCES projects (id),
    instances_limit BIGINT,
    vcpus_limit BIGINT,
    memory_mib_limit BIGINT,
    storage_gib_limit BIGINT,
    floating_ips_limit BIGINT,
    instances_used BIGINT NOT NULL DEFAULT 0,
    vcpus_used BIGINT NOT NULL DEFAULT 0,
    memory_mib_used BIGINT NOT NULL DEFAULT 0,
    storage_gib_used BIGINT NOT NULL DEFAULT 0,
    floating_ips_used BIGINT NOT NULL DEFAULT 0,
    time_modified TEXT NOT NULL
);

-- Append-only record of every mutating request.
CREATE TABLE audit_log (
    id TEXT PRIMARY KEY,
    time_created TEXT NOT NULL,
    request_id TEXT NOT NULL,
    actor TEXT NOT NULL,
    user_id TEXT,
    token_id TEXT,
    source_address TEXT NOT NULL,
    method TEXT NOT NULL,
    path TEXT NOT NULL,
    operation TEXT NOT NULL,
    project_id TEXT,
    status BIGINT NOT NULL,
    result TEXT NOT NULL
);
CREATE INDEX audit_log_time ON audit_log (time_created, id);
CREATE INDEX audit_log_project ON audit_log (project_id, time_created);

-- Structured attributes of an event (JSON text), e.g. the instance type and size an instance had
-- at a state change: metering derives billable intervals from these events.
ALTER TABLE events ADD COLUMN detail TEXT;
CREATE INDEX events_time ON events (time_created, id);
