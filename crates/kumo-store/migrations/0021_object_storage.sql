-- Issue 14: object storage (the S3 endpoint). Buckets belong to projects; bucket names are unique
-- on the endpoint among live buckets (as in S3). Object data live in blobs of the data backend
-- (kumo-objects): an object is one blob (a PUT) or its multipart upload's parts, in order; a
-- blob row exists only once its bytes are durable, and a blob file no row names is an orphan the
-- sweep removes. Keys are compared byte-wise (S3's order): the queries use the C collation.
CREATE TABLE buckets (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    project_id TEXT NOT NULL REFERENCES projects (id),
    public_read BIGINT NOT NULL DEFAULT 0,
    -- Lifecycle rules (kumo_store::objects::LifecycleRule, a JSON list); NULL: none.
    lifecycle TEXT,
    -- Bytes of its objects and of its uploads' parts (metering bills them per GiB-month).
    bytes_stored BIGINT NOT NULL DEFAULT 0,
    time_created TEXT NOT NULL,
    time_modified TEXT NOT NULL,
    time_deleted TEXT
);
CREATE UNIQUE INDEX buckets_name_live ON buckets (name) WHERE time_deleted IS NULL;
CREATE INDEX buckets_project ON buckets (project_id);

CREATE TABLE objects (
    id TEXT PRIMARY KEY,
    bucket_id TEXT NOT NULL REFERENCES buckets (id),
    object_key TEXT NOT NULL,
    size BIGINT NOT NULL,
    etag TEXT NOT NULL,
    -- Content-Type, Content-Encoding, … and x-amz-meta-*, as a JSON object.
    headers TEXT NOT NULL,
    -- The checksums the client sent and the server verified (CRC32, SHA-256, …), as JSON.
    checksums TEXT NOT NULL,
    time_modified TEXT NOT NULL
);
CREATE UNIQUE INDEX objects_bucket_key ON objects (bucket_id, object_key);

CREATE TABLE multipart_uploads (
    id TEXT PRIMARY KEY,
    bucket_id TEXT NOT NULL REFERENCES buckets (id),
    object_key TEXT NOT NULL,
    headers TEXT NOT NULL,
    time_created TEXT NOT NULL
);
CREATE INDEX multipart_uploads_bucket ON multipart_uploads (bucket_id, object_key);

-- A blob is an object's (object_id, seq: its place) or an upload's part (upload_id, seq: the part
-- number), never both.
CREATE TABLE blobs (
    id TEXT PRIMARY KEY,
    object_id TEXT REFERENCES objects (id),
    upload_id TEXT REFERENCES multipart_uploads (id),
    seq BIGINT NOT NULL,
    size BIGINT NOT NULL,
    md5 TEXT NOT NULL,
    -- CRC32C of its bytes: what a read verifies.
    crc32c BIGINT NOT NULL,
    time_created TEXT NOT NULL
);
CREATE INDEX blobs_object ON blobs (object_id, seq);
CREATE INDEX blobs_upload ON blobs (upload_id, seq);

-- Quotas of object storage: objects and bytes per project (kumo_store::quotas::DEFAULT_OBJECTS,
-- DEFAULT_OBJECT_BYTES), charged in the transaction that commits an object or a part.
ALTER TABLE project_quotas ADD COLUMN objects_limit BIGINT DEFAULT 1000000;
ALTER TABLE project_quotas ADD COLUMN object_bytes_limit BIGINT DEFAULT 107374182400;
ALTER TABLE project_quotas ADD COLUMN objects_used BIGINT NOT NULL DEFAULT 0;
ALTER TABLE project_quotas ADD COLUMN object_bytes_used BIGINT NOT NULL DEFAULT 0;
