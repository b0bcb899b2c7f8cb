-- Tenant networking: VPCs, subnets, interfaces (IPAM), security groups, SSH keys, floating IPs.
-- Portable SQL (SQLite and PostgreSQL).

CREATE TABLE vpcs (
    id TEXT PRIMARY KEY,
    project_id TEXT NOT NULL REFERENCES projects (id),
    name TEXT NOT NULL,
    description TEXT NOT NULL,
    time_created TEXT NOT NULL,
    time_modified TEXT NOT NULL,
    ipv4_cidr TEXT NOT NULL,
    -- VXLAN network id: names the VPC's bridge on every host (kv<vni>); never reused.
    vni BIGINT NOT NULL,
    time_deleted TEXT
);
CREATE UNIQUE INDEX vpcs_name_live ON vpcs (project_id, name) WHERE time_deleted IS NULL;
CREATE UNIQUE INDEX vpcs_vni ON vpcs (vni);

CREATE TABLE vpc_subnets (
    id TEXT PRIMARY KEY,
    project_id TEXT NOT NULL REFERENCES projects (id),
    vpc_id TEXT NOT NULL REFERENCES vpcs (id),
    name TEXT NOT NULL,
    description TEXT NOT NULL,
    time_created TEXT NOT NULL,
    time_modified TEXT NOT NULL,
    ipv4_cidr TEXT NOT NULL,
    time_deleted TEXT
);
CREATE UNIQUE INDEX vpc_subnets_name_live ON vpc_subnets (vpc_id, name) WHERE time_deleted IS NULL;

-- One interface per instance today. The address is allocated in the transaction that inserts
-- the row; the partial unique index is the last line of defence against duplicates.
CREATE TABLE network_interfaces (
    id TEXT PRIMARY KEY,
    instance_id TEXT NOT NULL REFERENCES instances (id),
    subnet_id TEXT NOT NULL REFERENCES vpc_subnets (id),
    mac TEXT NOT NULL,
    ipv4 TEXT NOT NULL,
    time_created TEXT NOT NULL,
    time_deleted TEXT
);
CREATE UNIQUE INDEX network_interfaces_ip_live ON network_interfaces (subnet_id, ipv4) WHERE time_deleted IS NULL;
CREATE UNIQUE INDEX network_interfaces_mac_live ON network_interfaces (mac) WHERE time_deleted IS NULL;
CREATE INDEX network_interfaces_instance ON network_interfaces (instance_id);

CREATE TABLE security_groups (
    id TEXT PRIMARY KEY,
    project_id TEXT NOT NULL REFERENCES projects (id),
    name TEXT NOT NULL,
    description TEXT NOT NULL,
    time_created TEXT NOT NULL,
    time_modified TEXT NOT NULL,
    time_deleted TEXT
);
CREATE UNIQUE INDEX security_groups_name_live ON security_groups (project_id, name) WHERE time_deleted IS NULL;

-- Rules are replaced as a whole (delete + insert in one transaction).
CREATE TABLE security_group_rules (
    group_id TEXT NOT NULL REFERENCES security_groups (id),
    position BIGINT NOT NULL,
    direction TEXT NOT NULL,
    protocol TEXT NOT NULL,
    port_from BIGINT,
    port_to BIGINT,
    source_cidr TEXT,
    source_group_id TEXT REFERENCES security_groups (id),
    PRIMARY KEY (group_id, position)
);

CREATE TABLE instance_security_groups (
    instance_id TEXT NOT NULL REFERENCES instances (id),
    group_id TEXT NOT NULL REFERENCES security_groups (id),
    PRIMARY KEY (instance_id, group_id)
);
CREATE INDEX instance_security_groups_group ON instance_security_groups (group_id);

CREATE TABLE ssh_keys (
    id TEXT PRIMARY KEY,
    project_id TEXT NOT NULL REFERENCES projects (id),
    name TEXT NOT NULL,
    description TEXT NOT NULL,
    time_created TEXT NOT NULL,
    time_modified TEXT NOT NULL,
    public_key TEXT NOT NULL,
    time_deleted TEXT
);
CREATE UNIQUE INDEX ssh_keys_name_live ON ssh_keys (project_id, name) WHERE time_deleted IS NULL;

-- The keys an instance was created with (copied: deleting the key later does not change a guest).
CREATE TABLE instance_ssh_keys (
    instance_id TEXT NOT NULL REFERENCES instances (id),
    position BIGINT NOT NULL,
    public_key TEXT NOT NULL,
    PRIMARY KEY (instance_id, position)
);

CREATE TABLE floating_ips (
    id TEXT PRIMARY KEY,
    project_id TEXT NOT NULL REFERENCES projects (id),
    name TEXT NOT NULL,
    description TEXT NOT NULL,
    time_created TEXT NOT NULL,
    time_modified TEXT NOT NULL,
    ip TEXT NOT NULL,
    instance_id TEXT REFERENCES instances (id),
    time_deleted TEXT
);
CREATE UNIQUE INDEX floating_ips_name_live ON floating_ips (project_id, name) WHERE time_deleted IS NULL;
CREATE UNIQUE INDEX floating_ips_ip_live ON floating_ips (ip) WHERE time_deleted IS NULL;
CREATE UNIQUE INDEX floating_ips_instance_live ON floating_ips (instance_id) WHERE time_deleted IS NULL AND instance_id IS NOT NULL;
