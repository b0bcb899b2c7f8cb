-- Issue 13 part 4: operator labels on hosts (a JSON object, key → value) and the labels an
-- instance type needs of its host; the scheduler places an instance only on a host with all of
-- its type's labels.
ALTER TABLE hosts ADD COLUMN labels TEXT NOT NULL DEFAULT '{}';
ALTER TABLE instance_types ADD COLUMN host_labels TEXT NOT NULL DEFAULT '{}';
