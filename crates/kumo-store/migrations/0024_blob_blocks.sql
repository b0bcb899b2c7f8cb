-- Issue 14: the CRC32C of each 1 MiB block of a blob (8 hex digits each, in order), so that a
-- ranged read verifies the blocks it touches. NULL for blobs written before (verified whole only).
ALTER TABLE blobs ADD COLUMN block_crcs TEXT;
