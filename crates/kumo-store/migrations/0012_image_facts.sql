-- Images carry their OS facts (issue 12): distribution, version, default user and the smallest
-- memory and disk an instance of the image may have. Null: not known (older images, imports that
-- did not say).
ALTER TABLE images ADD COLUMN os_family TEXT;
ALTER TABLE images ADD COLUMN os_version TEXT;
ALTER TABLE images ADD COLUMN default_user TEXT;
ALTER TABLE images ADD COLUMN min_memory_mib BIGINT;
ALTER TABLE images ADD COLUMN min_disk_gib BIGINT;
