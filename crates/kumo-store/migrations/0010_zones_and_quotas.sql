-- Issue 10, items 4 and 6.
--
-- VPCs: the VNI (24-bit, the VXLAN id naming the bridge and routing table) and the conntrack
-- zone (16-bit) are both allocated as the lowest value free among live VPCs, so deleted VPCs
-- give theirs back (before, the VNI was MAX + 1 forever and doubled as the zone: after ~65k
-- creates the nft ruleset no longer applied). Uniqueness holds among live VPCs only.
ALTER TABLE vpcs ADD COLUMN ct_zone BIGINT;
-- Live VPCs keep their zone = VNI where it fits, so established connections survive the upgrade.
UPDATE vpcs SET ct_zone = vni WHERE time_deleted IS NULL AND vni <= 65535;
-- Those whose VNI did not fit (their networking was broken already) take the values after the
-- largest fitting zone, in VNI order.
UPDATE vpcs SET ct_zone =
    (SELECT COALESCE(MAX(a.vni), 0) FROM vpcs a WHERE a.time_deleted IS NULL AND a.vni <= 65535)
    + (SELECT COUNT(*) FROM vpcs b WHERE b.time_deleted IS NULL AND b.vni > 65535 AND b.vni <= vpcs.vni)
    WHERE time_deleted IS NULL AND vni > 65535;
DROP INDEX vpcs_vni;
CREATE UNIQUE INDEX vpcs_vni_live ON vpcs (vni) WHERE time_deleted IS NULL;
CREATE UNIQUE INDEX vpcs_ct_zone_live ON vpcs (ct_zone) WHERE time_deleted IS NULL;

-- One row whose lock (an UPDATE in the creating transaction) serialises VPC allocations on
-- PostgreSQL; SQLite has one writer anyway. The unique indexes above stay the backstop.
CREATE TABLE vpc_allocator (
    id BIGINT PRIMARY KEY,
    allocations BIGINT NOT NULL
);
INSERT INTO vpc_allocator (id, allocations) VALUES (1, 0);

-- Quotas for what fills the disk or the zone space: VPCs, project images (count; their GiB count
-- against storage_gib), snapshots and backups (counts). New limits have finite defaults (an
-- operator may set them to unlimited); the same numbers are in kumo_store::quotas::DEFAULT_*.
ALTER TABLE project_quotas ADD COLUMN vpcs_limit BIGINT DEFAULT 10;
ALTER TABLE project_quotas ADD COLUMN images_limit BIGINT DEFAULT 20;
ALTER TABLE project_quotas ADD COLUMN snapshots_limit BIGINT DEFAULT 100;
ALTER TABLE project_quotas ADD COLUMN backups_limit BIGINT DEFAULT 100;
ALTER TABLE project_quotas ADD COLUMN vpcs_used BIGINT NOT NULL DEFAULT 0;
ALTER TABLE project_quotas ADD COLUMN images_used BIGINT NOT NULL DEFAULT 0;
ALTER TABLE project_quotas ADD COLUMN snapshots_used BIGINT NOT NULL DEFAULT 0;
ALTER TABLE project_quotas ADD COLUMN backups_used BIGINT NOT NULL DEFAULT 0;

-- Count what live projects already hold, once (like 0005 did for instances).
INSERT INTO project_quotas (project_id, time_modified)
    SELECT p.id, p.time_modified FROM projects p
    WHERE p.time_deleted IS NULL AND NOT EXISTS (SELECT 1 FROM project_quotas q WHERE q.project_id = p.id);

UPDATE project_quotas SET
    vpcs_used = (SELECT COUNT(*) FROM vpcs v
                 WHERE v.project_id = project_quotas.project_id AND v.time_deleted IS NULL),
    images_used = (SELECT COUNT(*) FROM images i
                   WHERE i.project_id = project_quotas.project_id AND i.time_deleted IS NULL),
    snapshots_used = (SELECT COUNT(*) FROM snapshots s
                      WHERE s.project_id = project_quotas.project_id AND s.time_deleted IS NULL),
    backups_used = (SELECT COUNT(*) FROM volume_backups b
                    WHERE b.project_id = project_quotas.project_id AND b.time_deleted IS NULL),
    storage_gib_used = storage_gib_used
        + (SELECT COALESCE(SUM((i.size_bytes + 1073741823) / 1073741824), 0) FROM images i
           WHERE i.project_id = project_quotas.project_id AND i.time_deleted IS NULL);
