-- Issue 13: Kumo as a cluster (controllers on PostgreSQL, one `kumod agent` per host).
--
-- Zones group hosts; names are unique among live zones. Hosts gain their zone, their role
-- ('local': the all-in-one's own in-process host; 'agent': joined over the network with a join
-- token), a cordon flag, and what a controller needs to reach an agent and an agent to prove
-- itself to controllers. Existing hosts are put in the zone `default` by the code, not here
-- (kumo_store::hosts::register puts a zoneless host there, creating the zone): a migration has no
-- portable way to make an id.
CREATE TABLE zones (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    description TEXT NOT NULL,
    time_created TEXT NOT NULL,
    time_modified TEXT NOT NULL,
    time_deleted TEXT
);
CREATE UNIQUE INDEX zones_name_live ON zones (name) WHERE time_deleted IS NULL;

ALTER TABLE hosts ADD COLUMN zone_id TEXT REFERENCES zones (id);
ALTER TABLE hosts ADD COLUMN role TEXT NOT NULL DEFAULT 'local';
ALTER TABLE hosts ADD COLUMN cordoned BIGINT NOT NULL DEFAULT 0;
-- An agent's API base URL (https://10.77.0.2:7401).
ALTER TABLE hosts ADD COLUMN address TEXT;
-- SHA-256 of the agent's TLS certificate, AB:CD:… (controllers pin it).
ALTER TABLE hosts ADD COLUMN cert_fingerprint TEXT;
-- The bearer a controller presents to the agent.
ALTER TABLE hosts ADD COLUMN agent_secret TEXT;
-- SHA-256 hex of the bearer the agent presents to controllers.
ALTER TABLE hosts ADD COLUMN credential_hash TEXT;
ALTER TABLE hosts ADD COLUMN last_seen TEXT;
CREATE UNIQUE INDEX hosts_credential_live ON hosts (credential_hash) WHERE time_deleted IS NULL;
CREATE INDEX hosts_zone ON hosts (zone_id);

-- One-time tokens a host joins with: only the SHA-256 hex of the token is kept. `time_used` and
-- `host_id` are set when it is consumed (host_id names the host that joined; no foreign key: the
-- token is consumed in the join's transaction before the host row is written).
CREATE TABLE join_tokens (
    id TEXT PRIMARY KEY,
    token_hash TEXT NOT NULL,
    zone_id TEXT NOT NULL REFERENCES zones (id),
    time_created TEXT NOT NULL,
    time_expires TEXT NOT NULL,
    time_used TEXT,
    host_id TEXT
);
CREATE UNIQUE INDEX join_tokens_hash ON join_tokens (token_hash);
