//! Quotas, prices, usage, invoices and budgets on the wire. Money: unit prices as decimal strings
//! (plus the exact integer micro-units), costs in integer minor units (cents).

use crate::PriceId;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

/// Limits of a project's quota (null or absent: unlimited). Also the body of `quota_update`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QuotaLimits {
    /// Most instances (any state but destroyed).
    #[serde(default)]
    #[schema(minimum = 0, maximum = 1000000000)]
    pub instances: Option<i64>,
    /// Most vCPUs over all instances.
    #[serde(default)]
    #[schema(minimum = 0, maximum = 1000000000)]
    pub vcpus: Option<i64>,
    /// Most memory over all instances, GiB.
    #[serde(default)]
    #[schema(minimum = 0, maximum = 1000000000)]
    pub memory_gib: Option<i64>,
    /// Most storage (instance root disks, volumes and project images), GiB.
    #[serde(default)]
    #[schema(minimum = 0, maximum = 1000000000)]
    pub storage_gib: Option<i64>,
    /// Most floating IPs.
    #[serde(default)]
    #[schema(minimum = 0, maximum = 1000000000)]
    pub floating_ips: Option<i64>,
    /// Most VPCs (each takes a conntrack zone on the hosts; default 10).
    #[serde(default)]
    #[schema(minimum = 0, maximum = 1000000000)]
    pub vpcs: Option<i64>,
    /// Most project images (their GiB also count against `storage_gib`; default 20).
    #[serde(default)]
    #[schema(minimum = 0, maximum = 1000000000)]
    pub images: Option<i64>,
    /// Most snapshots (default 100).
    #[serde(default)]
    #[schema(minimum = 0, maximum = 1000000000)]
    pub snapshots: Option<i64>,
    /// Most volume backups (default 100).
    #[serde(default)]
    #[schema(minimum = 0, maximum = 1000000000)]
    pub backups: Option<i64>,
    /// Most objects in the project's buckets (default 1,000,000).
    #[serde(default)]
    #[schema(minimum = 0, maximum = 1000000000)]
    pub objects: Option<i64>,
    /// Most object storage, GiB: the project's objects and the parts of its uploads in progress
    /// (default 100).
    #[serde(default)]
    #[schema(minimum = 0, maximum = 1000000000)]
    pub object_storage_gib: Option<i64>,
}

/// What a project uses of its quota.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct QuotaUsage {
    /// Instances (any state but destroyed).
    pub instances: i64,
    /// vCPUs of those instances.
    pub vcpus: i64,
    /// Memory of those instances, MiB (exact; limits are in GiB).
    pub memory_mib: i64,
    /// Storage of root disks, volumes and project images, GiB.
    pub storage_gib: i64,
    /// Floating IPs.
    pub floating_ips: i64,
    /// VPCs.
    #[serde(default)]
    pub vpcs: i64,
    /// Project images.
    #[serde(default)]
    pub images: i64,
    /// Snapshots.
    #[serde(default)]
    pub snapshots: i64,
    /// Volume backups.
    #[serde(default)]
    pub backups: i64,
    /// Objects in the project's buckets.
    #[serde(default)]
    pub objects: i64,
    /// Bytes of those objects and of the parts of uploads in progress.
    #[serde(default)]
    pub object_bytes: i64,
}

/// A project's quota: limits and use.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct QuotaView {
    /// Project name.
    pub project: String,
    /// Limits (null: unlimited).
    pub limits: QuotaLimits,
    /// What is charged against them now.
    pub used: QuotaUsage,
}

/// Quotas of every project (operators).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct QuotaList {
    /// One entry per live project, by name.
    pub items: Vec<QuotaView>,
}

/// A price to add to the catalogue, effective from now (never retroactive).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PriceSet {
    /// `instance_type` (per hour), `disk`, `volume`, `snapshot`, `backup`, `image` (per GiB-month) or
    /// `floating_ip` (per hour).
    #[schema(pattern = "^(instance_type|disk|volume|snapshot|backup|image|floating_ip)$")]
    pub kind: String,
    /// The instance type name, for kind `instance_type` (omit for other kinds).
    #[serde(default)]
    #[schema(pattern = "^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$")]
    pub name: Option<String>,
    /// Price per unit as a decimal string with at most 6 fraction digits, e.g. "0.012".
    #[schema(pattern = "^ *([0-9]{1,12}(\\.[0-9]{0,6})?|\\.[0-9]{1,6}) *$")]
    pub unit_price: String,
}

/// A price of the catalogue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PriceView {
    /// Unique id.
    #[schema(value_type = Uuid)]
    pub id: PriceId,
    /// Price kind (see `PriceSet.kind`).
    pub kind: String,
    /// Instance type name for kind `instance_type`, else null.
    pub name: Option<String>,
    /// Price per `price_unit`, decimal string.
    pub unit_price: String,
    /// The same price in integer micro-units (1 = 0.000001).
    pub unit_price_micros: i64,
    /// What the price is per: `hour` or `GiB-month` (730 hours).
    pub price_unit: String,
    /// In force from this time.
    pub effective_from: chrono::DateTime<chrono::Utc>,
    /// Replaced by a newer price at this time (null: in force now).
    pub effective_until: Option<chrono::DateTime<chrono::Utc>>,
}

/// The price catalogue with its history.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PriceList {
    /// Every price ever set, by kind, name and time.
    pub items: Vec<PriceView>,
}

/// A stretch of time that contributed to a usage line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct UsageInterval {
    /// Start (inclusive).
    pub start: chrono::DateTime<chrono::Utc>,
    /// End (exclusive).
    pub end: chrono::DateTime<chrono::Utc>,
    /// GiB counted during the interval (storage lines), else null.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gib: Option<i64>,
}

/// One line of usage: a resource, at one unit price.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct UsageLine {
    /// Kind of resource: `instance` (running time) or `disk` (an instance's root disk).
    pub resource_type: String,
    /// Name of the resource (at its last event in the period).
    pub resource: String,
    /// Id of the resource.
    pub resource_id: Uuid,
    /// The price that applies: `instance_type` (with `price_name` the type) or `disk`.
    pub price_kind: String,
    /// The instance type name for `instance_type` lines, else null.
    pub price_name: Option<String>,
    /// Quantity in `unit`, whole units (rounded half up once per line).
    pub quantity: i64,
    /// `second` (running time) or `GiB-second` (storage).
    pub unit: String,
    /// Price per `price_unit`, decimal string ("0" when no price is set).
    pub unit_price: String,
    /// The same in integer micro-units.
    pub unit_price_micros: i64,
    /// `hour` or `GiB-month` (730 hours).
    pub price_unit: String,
    /// quantity × unit price, in minor units (cents), rounded half up once.
    pub cost: i64,
    /// The intervals that produced this line.
    pub intervals: Vec<UsageInterval>,
}

/// Usage and cost of a project over a window.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct UsageReport {
    /// Project name.
    pub project: String,
    /// Window start (inclusive).
    pub from: chrono::DateTime<chrono::Utc>,
    /// Window end (exclusive; never later than now).
    pub to: chrono::DateTime<chrono::Utc>,
    /// One line per resource and unit price.
    pub items: Vec<UsageLine>,
    /// Sum of the lines' costs, minor units (cents).
    pub total: i64,
}

/// The invoice of a closed calendar month: generated once, never changed.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct InvoiceView {
    /// Project name.
    pub project: String,
    /// The month, `YYYY-MM` (UTC).
    pub period: String,
    /// Period start (inclusive).
    pub from: chrono::DateTime<chrono::Utc>,
    /// Period end (exclusive).
    pub to: chrono::DateTime<chrono::Utc>,
    /// When the invoice was generated.
    pub time_created: chrono::DateTime<chrono::Utc>,
    /// The lines.
    pub items: Vec<UsageLine>,
    /// Sum of the lines' costs, minor units (cents).
    pub total: i64,
}

/// An invoice without its lines.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct InvoiceSummary {
    /// The month, `YYYY-MM`.
    pub period: String,
    /// Total, minor units (cents).
    pub total: i64,
    /// Number of lines.
    pub lines: usize,
    /// When the invoice was generated.
    pub time_created: chrono::DateTime<chrono::Utc>,
}

/// A project's invoices (closed months), oldest first.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct InvoiceList {
    /// One per closed month since the project's first event.
    pub items: Vec<InvoiceSummary>,
}

/// A monthly budget (body of `budget_update`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BudgetSet {
    /// Monthly budget as a decimal string, e.g. "50.00".
    #[schema(pattern = "^ *([0-9]{1,16}(\\.[0-9]{0,2})?|\\.[0-9]{1,2}) *$")]
    pub monthly: String,
    /// Record a `budget_alert` event when month-to-date cost reaches this percentage (1–1000).
    #[schema(minimum = 1, maximum = 1000)]
    pub alert_at_percent: i64,
}

/// A project's budget and where the month stands.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct BudgetView {
    /// Project name.
    pub project: String,
    /// Monthly budget, decimal string (null: no budget set).
    pub monthly: Option<String>,
    /// Monthly budget, minor units (cents; null: no budget set).
    pub monthly_cents: Option<i64>,
    /// Alert threshold, percent of the monthly budget (null: no budget set).
    pub alert_at_percent: Option<i64>,
    /// Cost of the current month so far, minor units (cents).
    pub month_to_date: i64,
    /// The last month (`YYYY-MM`) a budget alert was recorded for.
    pub last_alert_period: Option<String>,
}
