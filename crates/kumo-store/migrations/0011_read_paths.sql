-- Fast read paths (issue 11).
--
-- Metering reads a window of a project's events by type, plus, per resource, its last events
-- before the window (events::for_metering_window): the first index walks resources and seeks
-- "last event before t" per resource, the second ranges over the window's events.
CREATE INDEX events_metering ON events (project_id, resource_type, resource_id, time_created, id);
CREATE INDEX events_metering_window ON events (project_id, resource_type, time_created, id);

-- A page of a project's live instances in name order, ties by id, without a sort.
CREATE INDEX instances_live_by_name ON instances (project_id, name, id) WHERE time_deleted IS NULL;
