-- Issue 13: placement groups. A project's instances can name one; the scheduler places the
-- group's members by its policy ('spread', 'pack', 'anti-affinity', 'affinity'). Names are unique
-- among a project's live groups.
CREATE TABLE placement_groups (
    id TEXT PRIMARY KEY,
    project_id TEXT NOT NULL REFERENCES projects (id),
    name TEXT NOT NULL,
    description TEXT NOT NULL,
    policy TEXT NOT NULL,
    time_created TEXT NOT NULL,
    time_modified TEXT NOT NULL,
    time_deleted TEXT
);
CREATE UNIQUE INDEX placement_groups_name_live ON placement_groups (project_id, name) WHERE time_deleted IS NULL;

ALTER TABLE instances ADD COLUMN placement_group_id TEXT REFERENCES placement_groups (id);
CREATE INDEX instances_placement_group ON instances (placement_group_id);
