-- Usage reads only the window it bills (issue 11, item 5): per project, resource type and month,
-- the state each resource carries across the month's start, as the few events that fix it (its
-- last event before the month and its last one setting each carried field), copied from `events`.
-- A derived read model (kumo_store::metering): built from the previous month's carry and that
-- month's events on the first read that needs it, rebuilt from events when missing, and dropped
-- for the months after an event recorded with a past time. `spec` names what is carried (the
-- fields and the version of the rule), so a change of rule never reads rows built by another.
CREATE TABLE metering_carry_months (
    project_id TEXT NOT NULL,
    resource_type TEXT NOT NULL,
    spec TEXT NOT NULL,
    month TEXT NOT NULL,
    time_built TEXT NOT NULL,
    resources INTEGER NOT NULL,
    PRIMARY KEY (project_id, resource_type, spec, month)
);

CREATE TABLE metering_carry (
    project_id TEXT NOT NULL,
    resource_type TEXT NOT NULL,
    spec TEXT NOT NULL,
    month TEXT NOT NULL,
    resource_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    resource_name TEXT NOT NULL,
    time_created TEXT NOT NULL,
    kind TEXT NOT NULL,
    to_state TEXT,
    detail TEXT,
    PRIMARY KEY (project_id, resource_type, spec, month, resource_id, event_id)
);
