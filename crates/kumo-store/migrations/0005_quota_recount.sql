-- Instances created before quotas existed were never charged: count what every live project
-- really uses, once, so that releasing those instances cannot drive the counters negative.
INSERT INTO project_quotas (project_id, time_modified)
    SELECT p.id, p.time_modified FROM projects p
    WHERE p.time_deleted IS NULL AND NOT EXISTS (SELECT 1 FROM project_quotas q WHERE q.project_id = p.id);

UPDATE project_quotas SET
    instances_used = (SELECT COUNT(*) FROM instances i
                      WHERE i.project_id = project_quotas.project_id AND i.time_deleted IS NULL),
    vcpus_used = (SELECT COALESCE(SUM(i.vcpus), 0) FROM instances i
                  WHERE i.project_id = project_quotas.project_id AND i.time_deleted IS NULL),
    memory_mib_used = (SELECT COALESCE(SUM(i.memory_mib), 0) FROM instances i
                       WHERE i.project_id = project_quotas.project_id AND i.time_deleted IS NULL),
    storage_gib_used = (SELECT COALESCE(SUM(i.disk_gib), 0) FROM instances i
                        WHERE i.project_id = project_quotas.project_id AND i.time_deleted IS NULL);
