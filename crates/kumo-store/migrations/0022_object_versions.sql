-- Issue 14: bucket versioning. A bucket's versioning is NULL (never enabled), 'Enabled' or
-- 'Suspended' (S3 cannot go back to unversioned). Every row of `objects` is a version of its key:
-- `version_id` is 'null' for what an unversioned or suspended bucket writes (S3's null version)
-- and the row's id otherwise; `seq` orders a key's versions (the highest is the newest);
-- `is_latest` marks the current one; a delete marker is a version without data.
ALTER TABLE buckets ADD COLUMN versioning TEXT;
ALTER TABLE objects ADD COLUMN version_id TEXT NOT NULL DEFAULT 'null';
ALTER TABLE objects ADD COLUMN seq BIGINT NOT NULL DEFAULT 1;
ALTER TABLE objects ADD COLUMN is_latest BIGINT NOT NULL DEFAULT 1;
ALTER TABLE objects ADD COLUMN delete_marker BIGINT NOT NULL DEFAULT 0;
-- When a version stopped being the latest (lifecycle NoncurrentVersionExpiration counts from it).
ALTER TABLE objects ADD COLUMN time_noncurrent TEXT;
DROP INDEX objects_bucket_key;
CREATE UNIQUE INDEX objects_bucket_key_version ON objects (bucket_id, object_key, version_id);
CREATE UNIQUE INDEX objects_bucket_key_latest ON objects (bucket_id, object_key) WHERE is_latest = 1;
