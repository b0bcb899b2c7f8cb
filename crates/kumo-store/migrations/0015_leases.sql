-- Issue 13: several controllers on one database. A lease names the controller that does a kind
-- of background work (today one lease, `background`: the reconcilers, monitoring, billing); it
-- expires when its holder stops renewing it (killed, cut off), and another controller takes it.
CREATE TABLE leases (
    name TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    time_expires TEXT NOT NULL
);
