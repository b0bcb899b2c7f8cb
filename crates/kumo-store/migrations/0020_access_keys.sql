-- Issue 14: S3 access keys. A key belongs to a user and is scoped to one project (the user's role
-- there applies to every request signed with it). The secret is needed in clear to check SigV4
-- signatures, so it is kept sealed (ChaCha20-Poly1305 under the master key, the access key id as
-- associated data), never hashed; it is shown once, at creation. A deleted key stops working at
-- once (`time_deleted`); its id is never reused.
CREATE TABLE access_keys (
    id TEXT PRIMARY KEY,
    access_key_id TEXT NOT NULL,
    project_id TEXT NOT NULL REFERENCES projects (id),
    user_id TEXT NOT NULL REFERENCES users (id),
    name TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    secret_sealed TEXT NOT NULL,
    time_created TEXT NOT NULL,
    time_modified TEXT NOT NULL,
    time_last_used TEXT,
    time_deleted TEXT
);
CREATE UNIQUE INDEX access_keys_key_id ON access_keys (access_key_id);
CREATE UNIQUE INDEX access_keys_project_name_live ON access_keys (project_id, name) WHERE time_deleted IS NULL;
CREATE INDEX access_keys_user ON access_keys (user_id);
