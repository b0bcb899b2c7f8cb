-- Pay-as-you-go: the price catalogue (with history), stored invoices of closed months, budgets.
-- Money: unit prices in integer micro-units (1 = 0.000001 of the currency), costs in integer minor
-- units (cents). Portable SQL (SQLite and PostgreSQL).

-- One row per price change; the price in force at time t is the row of (kind, name) with the
-- latest effective_from <= t. Rows are never updated or deleted (history is kept).
CREATE TABLE prices (
    id TEXT PRIMARY KEY,
    -- instance_type (per hour) | disk | volume | snapshot | backup | image (per GiB-month) | floating_ip (per hour)
    kind TEXT NOT NULL,
    -- the instance type name for kind = instance_type, else ''
    name TEXT NOT NULL,
    unit_price_micros BIGINT NOT NULL,
    effective_from TEXT NOT NULL,
    time_created TEXT NOT NULL
);
CREATE INDEX prices_lookup ON prices (kind, name, effective_from);

-- An invoice is generated once for a closed calendar month and never changed afterwards.
CREATE TABLE invoices (
    id TEXT PRIMARY KEY,
    project_id TEXT NOT NULL REFERENCES projects (id),
    -- YYYY-MM (UTC)
    period TEXT NOT NULL,
    period_start TEXT NOT NULL,
    period_end TEXT NOT NULL,
    total_cents BIGINT NOT NULL,
    time_created TEXT NOT NULL
);
CREATE UNIQUE INDEX invoices_project_period ON invoices (project_id, period);

CREATE TABLE invoice_lines (
    invoice_id TEXT NOT NULL REFERENCES invoices (id),
    line_no BIGINT NOT NULL,
    resource_type TEXT NOT NULL,
    resource_id TEXT NOT NULL,
    resource_name TEXT NOT NULL,
    -- the price kind and name that priced this line
    price_kind TEXT NOT NULL,
    price_name TEXT NOT NULL,
    quantity BIGINT NOT NULL,
    unit TEXT NOT NULL,
    unit_price_micros BIGINT NOT NULL,
    price_unit TEXT NOT NULL,
    cost_cents BIGINT NOT NULL,
    -- JSON array of the intervals that produced the line: [{"start","end","amount"}]
    intervals TEXT NOT NULL,
    PRIMARY KEY (invoice_id, line_no)
);

CREATE TABLE budgets (
    project_id TEXT PRIMARY KEY REFERENCES projects (id),
    monthly_cents BIGINT NOT NULL,
    alert_at_percent BIGINT NOT NULL,
    -- the last month (YYYY-MM) for which a budget_alert event was recorded: one alert per month
    last_alert_period TEXT,
    time_modified TEXT NOT NULL
);
