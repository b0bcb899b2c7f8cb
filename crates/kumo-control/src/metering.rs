//! Metering and pricing: pure functions from a resource's durable events to billable intervals,
//! and from intervals and the price catalogue to priced lines. No clock, no store: every time is
//! passed in, so tests use a fake clock by simply choosing the times.
//!
//! Usage comes only from the events table (`kumo_store::events`), which every state change writes
//! in the same transaction as the change itself. So nothing is double counted and no time is lost
//! across `kumod` restarts or crashes: there is no in-memory timer to lose. While `kumod` is down,
//! an instance keeps the state it last recorded, and is billed as such until the next recorded
//! change (for example the reconciler finding its guest gone and recording `stopped`).
//!
//! What is billed (see docs/billing.md):
//! - **Running time**, per instance type: from entering `running` until entering a state outside
//!   [`BILLED_STATES`] (`running`, `rebooting`, `stopping`: the guest holds its vCPUs and memory
//!   in all three). `creating` and `starting` are not billed (the guest is not yet usable), nor
//!   `stopped`, `failed`, `deleting` or `destroyed`.
//! - **Root-disk storage**, GiB-seconds: from creation until `destroyed`, whatever the state
//!   (a stopped instance's disk still occupies storage), at the size recorded at each event.
//! - **Volumes, snapshots, backups**, GiB-seconds: from their `created` event to their deletion, at
//!   the size in each event's detail (a backup at what it stored, in whole GiB rounded up); see
//!   [`storage_intervals`].
//!
//! Lines: the intervals of one resource are split where a price changes, grouped per unit price,
//! and each group's quantity is rounded to whole seconds (or GiB-seconds) once, then multiplied by
//! the unit price and rounded to cents once ([`kumo_types::money::cost_cents`]).

use chrono::{DateTime, Utc};
use kumo_types::billing::{UsageInterval, UsageLine};
use kumo_types::{money, InstanceState};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// Instance states whose time is billed as running time.
pub const BILLED_STATES: [InstanceState; 3] =
    [InstanceState::Running, InstanceState::Rebooting, InstanceState::Stopping];

/// Seconds in the "month" of a per-GiB-month price: 730 hours (the usual cloud convention, so a
/// price does not depend on the length of the calendar month).
pub const SECONDS_PER_GIB_MONTH: i64 = 730 * 3600;

/// The size of an instance at an event (the event's `detail`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Size {
    pub instance_type: String,
    pub vcpus: i64,
    pub memory_mib: i64,
    pub disk_gib: i64,
}

/// One durable event of an instance, as metering reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeterEvent {
    pub time: DateTime<Utc>,
    /// The state entered, for state changes (and `creating` for the creation).
    pub to_state: Option<InstanceState>,
    /// The size from this event on (None: unchanged).
    pub size: Option<Size>,
}

/// What an interval is billed as.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Meter {
    /// Running time of an instance of this type (priced per hour by kind `instance_type`).
    Running { instance_type: String },
    /// Root-disk storage (priced per GiB-month by kind `disk`).
    Disk,
    /// Volume storage (per GiB-month, kind `volume`).
    Volume,
    /// Snapshot storage (per GiB-month, kind `snapshot`), at the volume's size when taken.
    Snapshot,
    /// Backup storage (per GiB-month, kind `backup`), at what the backup stored (whole GiB, up).
    Backup,
    /// A floating IP held by the project, attached or not (priced per hour by kind `floating_ip`).
    FloatingIp,
    /// Object storage of a bucket (per GiB-month, kind `object_storage`), at the bytes of its
    /// objects and upload parts (whole GiB, up).
    ObjectStorage,
}

impl Meter {
    pub fn price_key(&self) -> (&str, &str) {
        match self {
            Meter::Running { instance_type } => ("instance_type", instance_type),
            Meter::Disk => ("disk", ""),
            Meter::Volume => ("volume", ""),
            Meter::Snapshot => ("snapshot", ""),
            Meter::Backup => ("backup", ""),
            Meter::FloatingIp => ("floating_ip", ""),
            Meter::ObjectStorage => ("object_storage", ""),
        }
    }

    /// Whether it is priced per GiB-month (everything but running time).
    pub fn is_storage(&self) -> bool {
        !matches!(self, Meter::Running { .. })
    }
}

/// One durable event of a stored resource (volume, snapshot, backup), as metering reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageEvent {
    pub time: DateTime<Utc>,
    /// Whether the resource exists from this event on (None: unchanged).
    pub exists: Option<bool>,
    /// Its size in GiB from this event on (None: unchanged).
    pub gib: Option<i64>,
}

/// The billable storage intervals of one stored resource: from its creation to its deletion, at
/// the size recorded at each event, clipped to `[from, to)`.
pub fn storage_intervals(
    meter: Meter,
    events: &[StorageEvent],
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Vec<Interval> {
    let mut out: Vec<Interval> = Vec::new();
    let (mut exists, mut gib, mut since) = (false, 0i64, None::<DateTime<Utc>>);
    let mut emit = |exists: bool, gib: i64, a: DateTime<Utc>, b: DateTime<Utc>| {
        let (a, b) = (a.max(from), b.min(to));
        if !exists || gib <= 0 || a >= b {
            return;
        }
        match out.last_mut() {
            Some(last) if last.end == a && last.gib == gib => last.end = b,
            _ => out.push(Interval { meter: meter.clone(), start: a, end: b, gib }),
        }
    };
    for e in events.iter().take_while(|e| e.time < to) {
        if let Some(t) = since {
            emit(exists, gib, t, e.time);
        }
        exists = e.exists.unwrap_or(exists);
        gib = e.gib.unwrap_or(gib);
        since = Some(e.time);
    }
    if let Some(t) = since {
        emit(exists, gib, t, to);
    }
    out
}

/// A billable stretch of time: `[start, end)`, with `gib` GiB for storage (1 for running time).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interval {
    pub meter: Meter,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub gib: i64,
}

impl Interval {
    /// Quantity in micro-units of the base unit (µs for running, GiB·µs for storage).
    pub fn micro_quantity(&self) -> i128 {
        (self.end - self.start).num_microseconds().unwrap_or(0) as i128 * self.gib as i128
    }
}

/// The billable intervals of one instance's events (in time order), clipped to `[from, to)`.
/// Events at or after `to` are ignored; a state still in force at `to` is billed up to `to`.
pub fn intervals(events: &[MeterEvent], from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<Interval> {
    let mut out: Vec<Interval> = Vec::new();
    let mut state: Option<InstanceState> = None;
    let mut size: Option<&Size> = None;
    let mut since: Option<DateTime<Utc>> = None;
    let emit = |out: &mut Vec<Interval>,
                state: Option<InstanceState>,
                size: Option<&Size>,
                a: DateTime<Utc>,
                b: DateTime<Utc>| {
        let (a, b) = (a.max(from), b.min(to));
        let (Some(state), Some(size)) = (state, size) else { return };
        if a >= b {
            return;
        }
        let mut push = |meter: Meter, gib: i64| {
            if let Some(last) = out.iter_mut().rev().find(|i| i.meter == meter) {
                if last.end == a && last.gib == gib {
                    last.end = b;
                    return;
                }
            }
            out.push(Interval { meter, start: a, end: b, gib });
        };
        if BILLED_STATES.contains(&state) {
            push(Meter::Running { instance_type: size.instance_type.clone() }, 1);
        }
        if state != InstanceState::Destroyed && size.disk_gib > 0 {
            push(Meter::Disk, size.disk_gib);
        }
    };
    for e in events.iter().take_while(|e| e.time < to) {
        if let Some(t) = since {
            emit(&mut out, state, size, t, e.time);
        }
        if let Some(s) = e.to_state {
            state = Some(s);
        }
        if let Some(s) = &e.size {
            size = Some(s);
        }
        since = Some(e.time);
    }
    if let Some(t) = since {
        emit(&mut out, state, size, t, to);
    }
    out.sort_by(|a, b| (&a.meter, a.start).cmp(&(&b.meter, b.start)));
    out
}

/// The prices of one (kind, name): (effective from, unit price in micro-units), by time.
type PriceSeries = Vec<(DateTime<Utc>, i64)>;

/// The price catalogue as metering needs it: per (kind, name), prices by effective time.
#[derive(Debug, Clone, Default)]
pub struct PriceBook {
    series: HashMap<(String, String), PriceSeries>,
}

impl PriceBook {
    pub fn new(prices: impl IntoIterator<Item = (String, String, DateTime<Utc>, i64)>) -> PriceBook {
        let mut series: HashMap<(String, String), PriceSeries> = HashMap::new();
        for (kind, name, at, micros) in prices {
            series.entry((kind, name)).or_default().push((at, micros));
        }
        for s in series.values_mut() {
            s.sort_by_key(|(t, _)| *t);
        }
        PriceBook { series }
    }

    /// The unit price (micro-units) in force at `t`; 0 when none was set yet.
    pub fn at(&self, kind: &str, name: &str, t: DateTime<Utc>) -> i64 {
        self.series
            .get(&(kind.to_string(), name.to_string()))
            .and_then(|s| s.iter().rev().find(|(from, _)| *from <= t))
            .map_or(0, |(_, p)| *p)
    }

    /// Times in `(a, b)` at which the price of (kind, name) changes.
    fn changes_within(&self, kind: &str, name: &str, a: DateTime<Utc>, b: DateTime<Utc>) -> Vec<DateTime<Utc>> {
        self.series
            .get(&(kind.to_string(), name.to_string()))
            .map(|s| s.iter().map(|(t, _)| *t).filter(|t| *t > a && *t < b).collect())
            .unwrap_or_default()
    }
}

/// Base units per price unit, the unit of quantities and of prices.
pub fn units(meter: &Meter) -> (i64, &'static str, &'static str) {
    match meter {
        Meter::Running { .. } => (3600, "second", "hour"),
        Meter::Disk => (SECONDS_PER_GIB_MONTH, "GiB-second", "GiB-month"),
        Meter::FloatingIp => (3600, "second", "hour"),
        _ => (SECONDS_PER_GIB_MONTH, "GiB-second", "GiB-month"),
    }
}

/// Rounds µ-quantities to whole base units, half up.
fn whole_units(micro: i128) -> i64 {
    ((micro + 500_000) / 1_000_000) as i64
}

/// The priced lines of one resource: its intervals split at price changes and grouped per
/// (meter, unit price), in the order of first use.
pub fn price_lines(
    resource_type_of: impl Fn(&Meter) -> &'static str,
    resource: &str,
    resource_id: uuid::Uuid,
    intervals: &[Interval],
    prices: &PriceBook,
) -> Vec<UsageLine> {
    struct Group {
        meter: Meter,
        micros: i64,
        micro_qty: i128,
        parts: Vec<UsageInterval>,
    }
    let mut groups: Vec<Group> = Vec::new();
    for iv in intervals {
        let (kind, name) = iv.meter.price_key();
        let mut cuts = vec![iv.start];
        cuts.extend(prices.changes_within(kind, name, iv.start, iv.end));
        cuts.push(iv.end);
        for w in cuts.windows(2) {
            let part = Interval { meter: iv.meter.clone(), start: w[0], end: w[1], gib: iv.gib };
            let micros = prices.at(kind, name, w[0]);
            let idx = match groups.iter().position(|g| g.meter == iv.meter && g.micros == micros) {
                Some(i) => i,
                None => {
                    groups.push(Group { meter: iv.meter.clone(), micros, micro_qty: 0, parts: Vec::new() });
                    groups.len() - 1
                }
            };
            let g = &mut groups[idx];
            g.micro_qty += part.micro_quantity();
            g.parts.push(UsageInterval {
                start: part.start,
                end: part.end,
                gib: part.meter.is_storage().then_some(part.gib),
            });
        }
    }
    groups
        .into_iter()
        .map(|g| {
            let (per, unit, price_unit) = units(&g.meter);
            let quantity = whole_units(g.micro_qty);
            let (kind, name) = g.meter.price_key();
            UsageLine {
                resource_type: resource_type_of(&g.meter).to_string(),
                resource: resource.to_string(),
                resource_id,
                price_kind: kind.to_string(),
                price_name: (!name.is_empty()).then(|| name.to_string()),
                quantity,
                unit: unit.to_string(),
                unit_price: money::format_micros(g.micros),
                unit_price_micros: g.micros,
                price_unit: price_unit.to_string(),
                cost: money::cost_cents(quantity, g.micros, per),
                intervals: g.parts,
            }
        })
        .collect()
}

/// The priced lines of one bucket's requests of one class (`write` or `read`): counts per hour,
/// each hour at the price in force at its start, grouped per unit price. Priced per 1,000
/// requests (kinds `object_write_requests`, `object_read_requests`).
pub fn request_lines(
    bucket: &str,
    bucket_id: uuid::Uuid,
    class: &str,
    hours: &[(DateTime<Utc>, u64)],
    prices: &PriceBook,
) -> Vec<UsageLine> {
    let kind = if class == "write" { "object_write_requests" } else { "object_read_requests" };
    let mut groups: Vec<(i64, u64, Vec<UsageInterval>)> = Vec::new();
    for (hour, n) in hours {
        let micros = prices.at(kind, "", *hour);
        let part = UsageInterval { start: *hour, end: *hour + chrono::Duration::hours(1), gib: None };
        match groups.iter_mut().find(|g| g.0 == micros) {
            Some(g) => {
                g.1 += n;
                g.2.push(part);
            }
            None => groups.push((micros, *n, vec![part])),
        }
    }
    groups
        .into_iter()
        .map(|(micros, n, parts)| UsageLine {
            resource_type: "bucket".into(),
            resource: bucket.to_string(),
            resource_id: bucket_id,
            price_kind: kind.into(),
            price_name: None,
            quantity: n as i64,
            unit: "request".into(),
            unit_price: money::format_micros(micros),
            unit_price_micros: micros,
            price_unit: "1,000 requests".into(),
            cost: money::cost_cents(n as i64, micros, 1000),
            intervals: parts,
        })
        .collect()
}

/// `instance` for running time, `disk` for the root disk.
pub fn instance_resource_type(m: &Meter) -> &'static str {
    match m {
        Meter::Running { .. } => "instance",
        Meter::Disk => "disk",
        Meter::Volume => "volume",
        Meter::Snapshot => "snapshot",
        Meter::Backup => "backup",
        Meter::FloatingIp => "floating_ip",
        Meter::ObjectStorage => "bucket",
    }
}

/// The billable intervals of one floating IP: held from its `created` event until its `deleted`
/// event (`kinds` in time order), clipped to `[from, to)`.
pub fn held_intervals(kinds: &[(DateTime<Utc>, &str)], from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<Interval> {
    let mut out = Vec::new();
    let mut since: Option<DateTime<Utc>> = None;
    let close = |a: DateTime<Utc>, b: DateTime<Utc>, out: &mut Vec<Interval>| {
        let (a, b) = (a.max(from), b.min(to));
        if a < b {
            out.push(Interval { meter: Meter::FloatingIp, start: a, end: b, gib: 1 });
        }
    };
    for (t, kind) in kinds.iter().take_while(|(t, _)| *t < to) {
        match *kind {
            "created" => since = since.or(Some(*t)),
            "deleted" => {
                if let Some(a) = since.take() {
                    close(a, *t, &mut out);
                }
            }
            _ => {}
        }
    }
    if let Some(a) = since {
        close(a, to, &mut out);
    }
    out
}

#[cfg(test)]
mod floating_ip_tests {
    use super::*;

    #[test]
    fn a_floating_ip_is_billed_while_held() {
        let t = |h: i64| DateTime::from_timestamp(1_700_000_000 + h * 3600, 0).unwrap();
        let ivs = held_intervals(&[(t(1), "created"), (t(2), "attached"), (t(4), "deleted")], t(0), t(10));
        assert_eq!(ivs, vec![Interval { meter: Meter::FloatingIp, start: t(1), end: t(4), gib: 1 }]);
        // Still held at the end of the window: billed up to it; clipped at its start.
        let ivs = held_intervals(&[(t(1), "created")], t(2), t(5));
        assert_eq!((ivs[0].start, ivs[0].end), (t(2), t(5)));
        let book = PriceBook::new(vec![("floating_ip".to_string(), String::new(), t(0), 5_000)]);
        let lines = price_lines(instance_resource_type, "ip1", uuid::Uuid::nil(), &ivs, &book);
        assert_eq!(
            (lines[0].price_kind.as_str(), lines[0].quantity, lines[0].unit.as_str()),
            ("floating_ip", 3 * 3600, "second")
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use proptest::prelude::*;

    fn t(s: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_790_000_000 + s, 0).single().expect("time")
    }

    fn size(ty: &str, gib: i64) -> Size {
        Size { instance_type: ty.into(), vcpus: 1, memory_mib: 512, disk_gib: gib }
    }

    fn ev(at: i64, state: Option<&str>, sz: Option<Size>) -> MeterEvent {
        MeterEvent { time: t(at), to_state: state.map(|s| InstanceState::parse(s).expect("a state")), size: sz }
    }

    fn secs(ivs: &[Interval], m: &Meter) -> i64 {
        ivs.iter().filter(|i| &i.meter == m).map(|i| (i.end - i.start).num_seconds() * i.gib).sum()
    }

    #[test]
    fn a_simple_life_is_billed_as_documented() {
        let small = Meter::Running { instance_type: "k1-small".into() };
        let large = Meter::Running { instance_type: "k1-large".into() };
        let evs = vec![
            ev(0, Some("creating"), Some(size("k1-small", 5))),
            ev(10, Some("starting"), None),
            ev(20, Some("running"), None),
            ev(120, Some("rebooting"), None),
            ev(125, Some("running"), None),
            ev(200, Some("stopping"), None),
            ev(210, Some("stopped"), None),
            ev(300, None, Some(size("k1-large", 40))),
            ev(400, Some("starting"), None),
            ev(405, Some("running"), None),
            ev(505, Some("deleting"), None),
            ev(510, Some("destroyed"), None),
        ];
        let ivs = intervals(&evs, t(0), t(10_000));
        assert_eq!(secs(&ivs, &small), 190); // 20..210 (reboot and stop included)
        assert_eq!(secs(&ivs, &large), 100); // 405..505
        assert_eq!(secs(&ivs, &Meter::Disk), 300 * 5 + 210 * 40); // 0..300 at 5 GiB, 300..510 at 40
                                                                  // Adjacent intervals of the same meter merge: running 20..210 is one interval.
        assert_eq!(ivs.iter().filter(|i| i.meter == small).count(), 1);
        // Clipping to a window.
        let ivs = intervals(&evs, t(100), t(150));
        assert_eq!(secs(&ivs, &small), 50);
        assert_eq!(secs(&ivs, &Meter::Disk), 250);
    }

    #[test]
    fn a_still_running_instance_is_billed_until_the_window_end() {
        let evs = vec![ev(0, Some("creating"), Some(size("k1-nano", 1))), ev(5, Some("running"), None)];
        let ivs = intervals(&evs, t(0), t(65));
        assert_eq!(secs(&ivs, &Meter::Running { instance_type: "k1-nano".into() }), 60);
        // Events after the window change nothing inside it.
        let mut later = evs.clone();
        later.push(ev(100, Some("stopping"), None));
        assert_eq!(intervals(&later, t(0), t(65)), ivs);
    }

    #[test]
    fn a_price_change_splits_the_line_and_is_never_retroactive() {
        let evs = vec![ev(0, Some("creating"), Some(size("k1-small", 0))), ev(0, Some("running"), None)];
        let ivs = intervals(&evs, t(0), t(7200));
        let book = PriceBook::new([
            ("instance_type".to_string(), "k1-small".to_string(), t(-100), 12_000),
            ("instance_type".to_string(), "k1-small".to_string(), t(3600), 15_000),
        ]);
        let lines = price_lines(instance_resource_type, "web", uuid::Uuid::nil(), &ivs, &book);
        assert_eq!(lines.len(), 1 + 1, "{lines:#?}");
        assert_eq!((lines[0].quantity, lines[0].unit_price_micros, lines[0].cost), (3600, 12_000, 1));
        assert_eq!((lines[1].quantity, lines[1].unit_price_micros, lines[1].cost), (3600, 15_000, 2));
        assert_eq!(lines[0].intervals[0].end, t(3600));
        assert_eq!(lines[1].intervals[0].start, t(3600));
        // Before any price is set, usage is shown at price 0.
        let none = price_lines(instance_resource_type, "web", uuid::Uuid::nil(), &ivs, &PriceBook::default());
        assert_eq!((none[0].quantity, none[0].cost, none[0].unit_price.as_str()), (7200, 0, "0.00"));
    }

    #[test]
    fn stored_resources_are_billed_from_creation_to_deletion_at_their_size() {
        let ev = |at: i64, exists: Option<bool>, gib: Option<i64>| StorageEvent { time: t(at), exists, gib };
        // Created at 10 s with 10 GiB, grown to 20 GiB at 100 s, deleted at 160 s.
        let evs =
            [ev(10, Some(true), Some(10)), ev(50, None, None), ev(100, None, Some(20)), ev(160, Some(false), None)];
        let ivs = storage_intervals(Meter::Volume, &evs, t(0), t(1000));
        let gib_secs: i64 = ivs.iter().map(|i| (i.end - i.start).num_seconds() * i.gib).sum();
        assert_eq!(gib_secs, 90 * 10 + 60 * 20);
        assert_eq!(ivs.len(), 2, "the unchanged event at 50 s does not split: {ivs:?}");
        // Clipped to the window, and still billed at the window's end if never deleted.
        let ivs = storage_intervals(Meter::Backup, &evs[..3], t(120), t(130));
        assert_eq!((ivs.len(), ivs[0].gib, (ivs[0].end - ivs[0].start).num_seconds()), (1, 20, 10));
    }

    #[test]
    fn requests_are_priced_per_thousand_at_the_price_of_their_hour() {
        let book = PriceBook::new([
            ("object_read_requests".to_string(), String::new(), t(0), 4_000),
            ("object_read_requests".to_string(), String::new(), t(7200), 5_000),
        ]);
        let id = uuid::Uuid::nil();
        let hours = [(t(0), 1500), (t(3600), 1000), (t(7200), 2000)];
        let lines = request_lines("photos", id, "read", &hours, &book);
        let got: Vec<_> = lines.iter().map(|l| (l.price_kind.as_str(), l.quantity, l.unit_price_micros)).collect();
        assert_eq!(got, [("object_read_requests", 2500, 4_000), ("object_read_requests", 2000, 5_000)]);
        // 2,500 at 0.004 per 1,000 = 0.01; 2,000 at 0.005 per 1,000 = 0.01: a cent each.
        assert_eq!((lines[0].cost, lines[1].cost), (1, 1));
        let few = request_lines("photos", id, "read", &[(t(7200), 999)], &book);
        assert_eq!(few[0].cost, 0, "999 × 0.005 / 1,000 = 0.004995: less than half a cent");
        assert_eq!((lines[0].unit.as_str(), lines[0].price_unit.as_str()), ("request", "1,000 requests"));
        let writes = request_lines("photos", id, "write", &[(t(0), 1)], &book);
        assert_eq!((writes[0].price_kind.as_str(), writes[0].unit_price_micros), ("object_write_requests", 0));
    }

    #[test]
    fn storage_is_priced_per_gib_month_of_730_hours() {
        let evs = vec![ev(0, Some("creating"), Some(size("k1-small", 10))), ev(0, Some("stopped"), None)];
        let ivs = intervals(&evs, t(0), t(SECONDS_PER_GIB_MONTH));
        let book = PriceBook::new([("disk".to_string(), String::new(), t(0), 100_000)]);
        let lines = price_lines(instance_resource_type, "db", uuid::Uuid::nil(), &ivs, &book);
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0].unit, "GiB-second");
        assert_eq!(lines[0].quantity, 10 * SECONDS_PER_GIB_MONTH);
        assert_eq!(lines[0].cost, 100); // 10 GiB-months at 0.10
    }

    /// A step of a random instance life: wait `dt` seconds, then enter a state, resize, or have
    /// kumod restart (which writes no event: time must neither be lost nor doubled).
    #[derive(Debug, Clone)]
    enum Step {
        Enter(&'static str),
        Resize(usize, i64),
        Restart,
    }

    const STATES: [&str; 8] =
        ["starting", "running", "rebooting", "stopping", "stopped", "failed", "deleting", "creating"];
    const TYPES: [&str; 3] = ["k1-nano", "k1-small", "k1-large"];

    fn step() -> impl Strategy<Value = (i64, Step)> {
        let s = prop_oneof![
            6 => (0..STATES.len()).prop_map(|i| Step::Enter(STATES[i])),
            2 => (0..TYPES.len(), 1i64..50).prop_map(|(t, g)| Step::Resize(t, g)),
            1 => Just(Step::Restart),
        ];
        (0i64..500, s)
    }

    /// Builds events from steps, and the true per-second usage by brute force.
    fn life(steps: &[(i64, Step)], destroy: bool) -> (Vec<MeterEvent>, i64) {
        let mut evs = vec![ev(0, Some("creating"), Some(size("k1-small", 5)))];
        let mut now = 0;
        for (dt, s) in steps {
            now += dt;
            match s {
                Step::Enter(st) => evs.push(ev(now, Some(st), None)),
                Step::Resize(ty, gib) => evs.push(ev(now, None, Some(size(TYPES[*ty], *gib)))),
                Step::Restart => {}
            }
        }
        if destroy {
            now += 7;
            evs.push(ev(now, Some("destroyed"), None));
        }
        (evs, now)
    }

    /// The truth, second by second: the state and size in force during second `s`.
    fn truth(evs: &[MeterEvent], from: i64, to: i64) -> (HashMap<String, i64>, i64) {
        let mut running: HashMap<String, i64> = HashMap::new();
        let mut disk = 0;
        for s in from..to {
            let mut state = None;
            let mut sz = None;
            for e in evs.iter().filter(|e| e.time <= t(s)) {
                state = e.to_state.or(state);
                sz = e.size.clone().or(sz);
            }
            let (Some(state), Some(sz)) = (state, sz) else { continue };
            if BILLED_STATES.contains(&state) {
                *running.entry(sz.instance_type.clone()).or_default() += 1;
            }
            if state != InstanceState::Destroyed {
                disk += sz.disk_gib;
            }
        }
        (running, disk)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn summed_intervals_equal_the_true_time(steps in prop::collection::vec(step(), 0..25), destroy in any::<bool>(),
                                                 a in 0i64..3000, len in 0i64..6000) {
            let (evs, _) = life(&steps, destroy);
            let (from, to) = (a, a + len);
            let ivs = intervals(&evs, t(from), t(to));
            let (running, disk) = truth(&evs, from, to);
            for ty in TYPES {
                let m = Meter::Running { instance_type: ty.to_string() };
                prop_assert_eq!(secs(&ivs, &m), running.get(ty).copied().unwrap_or(0), "type {}", ty);
            }
            prop_assert_eq!(secs(&ivs, &Meter::Disk), disk);
            // Intervals of one meter never overlap (no double counting).
            for w in ivs.windows(2) {
                if w[0].meter == w[1].meter {
                    prop_assert!(w[0].end <= w[1].start, "overlap: {:?}", w);
                }
            }
        }

        #[test]
        fn window_splitting_is_additive(steps in prop::collection::vec(step(), 0..25), destroy in any::<bool>(),
                                        a in 0i64..3000, b in 0i64..3000, c in 0i64..3000) {
            let (evs, _) = life(&steps, destroy);
            let mut cut = [a, b, c];
            cut.sort();
            let whole = intervals(&evs, t(cut[0]), t(cut[2]));
            let left = intervals(&evs, t(cut[0]), t(cut[1]));
            let right = intervals(&evs, t(cut[1]), t(cut[2]));
            let total = |ivs: &[Interval]| ivs.iter().map(Interval::micro_quantity).sum::<i128>();
            prop_assert_eq!(total(&whole), total(&left) + total(&right));
            for ty in TYPES {
                let m = Meter::Running { instance_type: ty.to_string() };
                prop_assert_eq!(secs(&whole, &m), secs(&left, &m) + secs(&right, &m));
            }
        }

        #[test]
        fn line_costs_are_unit_price_times_quantity_rounded_once(
            steps in prop::collection::vec(step(), 0..25),
            p1 in 0i64..100_000_000, p2 in 0i64..100_000_000, change in 0i64..6000) {
            let (evs, end) = life(&steps, false);
            let ivs = intervals(&evs, t(0), t(end + 100));
            let book = PriceBook::new(TYPES.iter().flat_map(|ty| [
                ("instance_type".to_string(), ty.to_string(), t(0), p1),
                ("instance_type".to_string(), ty.to_string(), t(change), p2),
            ]).chain([("disk".to_string(), String::new(), t(0), p2)]));
            let lines = price_lines(instance_resource_type, "x", uuid::Uuid::nil(), &ivs, &book);
            let mut per_meter_qty: HashMap<String, i64> = HashMap::new();
            for l in &lines {
                let per = if l.unit == "second" { 3600 } else { SECONDS_PER_GIB_MONTH };
                prop_assert_eq!(l.cost, money::cost_cents(l.quantity, l.unit_price_micros, per));
                *per_meter_qty.entry(format!("{}{:?}", l.price_kind, l.price_name)).or_default() += l.quantity;
            }
            // Splitting at the price change loses no time (event times are whole seconds, so
            // rounding per line is exact here).
            for ty in TYPES {
                let m = Meter::Running { instance_type: ty.to_string() };
                let q = per_meter_qty.get(&format!("instance_type{:?}", Some(ty))).copied().unwrap_or(0);
                prop_assert_eq!(q, secs(&ivs, &m));
            }
        }
    }
}
