//! Store tests: events, metering's read model (`kumo_store::metering`: the usage window reads only
//! the window's events and the state each resource carries across the month's start, and that
//! gives exactly what the whole history gives) and metrics.
//!
//! Each case runs on SQLite and on PostgreSQL: see `common.rs`.

use crate::common::*;
use chrono::{DateTime, TimeDelta, Utc};
use kumo_store::events::{self, Carry, EventState, MeterRow, NewEvent};
use kumo_store::Store;
use kumo_types::page::PageParams;
use kumo_types::{InstanceId, InstanceState, ProjectId};
use std::collections::BTreeMap;
use uuid::Uuid;

store_tests!(
    events_record_and_list,
    metering_window_carries_the_state_from_before_it,
    metering_carry_equals_the_whole_history_for_random_lives,
    metering_carry_is_dropped_by_a_backdated_event,
    metrics_batches_rollups_and_retention,
);

async fn events_record_and_list(store: &Store) {
    let a = create_project(store, "ev-a").await;
    let b = create_project(store, "ev-b").await;
    let (r1, r2) = (Uuid::now_v7(), Uuid::now_v7());
    // Recorded interleaved, over several transactions: project a gets 7, r1 4 of them.
    // (project, resource, kind)
    type Planned = (Option<ProjectId>, Uuid, &'static str);
    let plan: [Planned; 10] = [
        (Some(a.id), r1, "created"),
        (Some(a.id), r2, "created"),
        (Some(b.id), r1, "created"),
        (Some(a.id), r1, "state"),
        (None, r1, "host-registered"),
        (Some(a.id), r2, "state"),
        (Some(a.id), r1, "state"),
        (Some(b.id), r2, "state"),
        (Some(a.id), r2, "deleted"),
        (Some(a.id), r1, "deleted"),
    ];
    for (i, chunk) in plan.chunks(3).enumerate() {
        let mut tx = store.begin().await.unwrap();
        for (j, (project_id, resource_id, kind)) in chunk.iter().enumerate() {
            let cause = format!("step {}", i * 3 + j);
            let (from, to) = if *kind == "state" { (Some("creating"), Some("running")) } else { (None, None) };
            events::record(
                &mut tx,
                &NewEvent {
                    project_id: *project_id,
                    resource_type: "instance",
                    resource_id: *resource_id,
                    resource_name: if *resource_id == r1 { "one" } else { "two" },
                    kind,
                    from_state: from,
                    to_state: to,
                    cause: &cause,
                    detail: None,
                },
            )
            .await
            .unwrap();
        }
        tx.commit().await.unwrap();
    }
    let steps = |f: &dyn Fn(&Planned) -> bool| -> Vec<String> {
        plan.iter().enumerate().filter(|(_, e)| f(e)).map(|(i, _)| format!("step {i}")).collect()
    };

    // Events come back oldest first, whatever sort_by asks.
    for sort in SORTS {
        for (resource, want) in [
            (None, steps(&|e| e.0 == Some(a.id))),
            (Some(r1), steps(&|e| e.0 == Some(a.id) && e.1 == r1)),
            (Some(r2), steps(&|e| e.0 == Some(a.id) && e.1 == r2)),
        ] {
            let pages = all_pages(3, sort, |req| async move {
                let mut c = store.read().await.unwrap();
                events::list(&mut c, a.id, resource, &req).await.unwrap()
            })
            .await;
            let sizes: Vec<usize> = pages.iter().map(Vec::len).collect();
            let mut want_sizes = vec![3; want.len() / 3];
            if want.len() % 3 != 0 {
                want_sizes.push(want.len() % 3);
            }
            assert_eq!(sizes, want_sizes, "{resource:?}, {sort:?}");
            let got: Vec<_> = pages.into_iter().flatten().collect();
            assert_eq!(got.iter().map(|e| e.cause.clone()).collect::<Vec<_>>(), want, "{resource:?}, {sort:?}");
            assert!(got.windows(2).all(|w| w[0].id.to_string() < w[1].id.to_string()), "id order");
            for e in &got {
                assert_eq!(e.project.as_deref(), Some("ev-a"));
                assert_eq!(e.resource_type, "instance");
                assert_eq!(e.resource_name, if e.resource_id == r1 { "one" } else { "two" });
                if let Some(r) = resource {
                    assert_eq!(e.resource_id, r);
                }
                let state = (e.from_state.as_deref(), e.to_state.as_deref());
                if e.kind == "state" {
                    assert_eq!(state, (Some("creating"), Some("running")));
                } else {
                    assert_eq!(state, (None, None));
                }
            }
            assert!(got.windows(2).all(|w| w[0].time_created <= w[1].time_created), "time order");
        }
    }
    let mut c = store.read().await.unwrap();
    let of_b = events::list(&mut c, b.id, None, &PageParams::default().validate().unwrap()).await.unwrap();
    assert_eq!(of_b.items.iter().map(|e| e.cause.as_str()).collect::<Vec<_>>(), ["step 2", "step 7"]);
    assert!(of_b.next_page.is_none());
    let none =
        events::list(&mut c, ProjectId::new_v7(), None, &PageParams::default().validate().unwrap()).await.unwrap();
    assert!(none.items.is_empty() && none.next_page.is_none());
}

fn at(rfc3339: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(rfc3339).unwrap().with_timezone(&Utc)
}

fn size(gib: i64) -> Option<String> {
    Some(format!(r#"{{"instance_type":"k1-small","vcpus":1,"memory_mib":512,"disk_gib":{gib}}}"#))
}

const INSTANCE: [Carry; 2] = [Carry::State, Carry::DetailWith("disk_gib")];

/// Per resource, the state at `from` folded from the rows before it, as metering folds it: the
/// last state set, the last detail set, and the time of the last event.
type Folded = BTreeMap<Uuid, (Option<EventState>, Option<String>, DateTime<Utc>)>;

fn fold(rows: &[MeterRow], from: DateTime<Utc>) -> Folded {
    let mut out = Folded::new();
    for r in rows.iter().filter(|r| r.time < from) {
        let e = out.entry(r.resource_id).or_insert((None, None, r.time));
        e.0 = r.to_state.or(e.0.take());
        e.1 = r.detail.clone().or(e.1.take());
        e.2 = r.time;
    }
    out
}

/// The whole history's fold without the resources that ended before `from` (destroyed: nothing
/// of them is billed from then on, and the window leaves them out).
fn fold_billable(whole: &[MeterRow], from: DateTime<Utc>) -> Folded {
    let destroyed = Some(EventState::Instance(InstanceState::Destroyed));
    fold(whole, from).into_iter().filter(|(_, s)| s.0 != destroyed).collect()
}

type Inside = Vec<(Uuid, DateTime<Utc>, String, Option<EventState>, Option<String>)>;

fn inside(rows: &[MeterRow], from: DateTime<Utc>, to: DateTime<Utc>) -> Inside {
    rows.iter()
        .filter(|r| r.time >= from && r.time < to)
        .map(|r| (r.resource_id, r.time, r.kind.clone(), r.to_state, r.detail.clone()))
        .collect()
}

fn same(a: &[MeterRow], b: &[MeterRow]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| {
            (x.resource_id, x.time, &x.kind, &x.to_state, &x.detail)
                == (y.resource_id, y.time, &y.kind, &y.to_state, &y.detail)
        })
}

/// The window through both paths (a write transaction, and the typed read path), checked to agree.
async fn window(store: &Store, p: ProjectId, carry: &[Carry], from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<MeterRow> {
    let mut tx = store.begin().await.unwrap();
    let via_tx = events::for_metering_window(&mut tx, p, "instance", carry, from, to).await.unwrap();
    tx.commit().await.unwrap();
    let fast = events::fast_for_metering_window(store, p, "instance", carry, from, to).await.unwrap();
    assert!(same(&via_tx, &fast), "the two paths differ for [{from}, {to}):\n{via_tx:#?}\n{fast:#?}");
    // Sorted by resource, then time.
    let key = |r: &MeterRow| (r.resource_id.to_string(), r.time);
    assert!(fast.windows(2).all(|w| key(&w[0]) <= key(&w[1])), "{fast:#?}");
    fast
}

async fn whole(store: &Store, p: ProjectId, to: DateTime<Utc>) -> Vec<MeterRow> {
    events::for_metering(&mut store.read().await.unwrap(), p, "instance", to).await.unwrap()
}

async fn stored_months(store: &Store, p: ProjectId) -> Vec<String> {
    sqlx::query_scalar("SELECT month FROM metering_carry_months WHERE project_id = $1 ORDER BY month")
        .bind(p.to_string())
        .fetch_all(store.reader())
        .await
        .unwrap()
}

/// `for_metering_window` reads the window's events and, per resource, the last events before it
/// that fix its state; folded per field (last value set wins), they give exactly the state the
/// whole history gives at the window's start, less the resources that ended. Both paths agree,
/// the month's carry is stored once and then read, and a window starting inside a month, or in
/// the month after, gives the same.
async fn metering_window_carries_the_state_from_before_it(store: &Store) {
    let p = create_project(store, "meter").await;
    let other = create_project(store, "other").await;
    let t = |d: i64, s: i64| at("2026-09-01T00:00:00Z") + TimeDelta::seconds(d * 86400 + s);
    let (from, to) = (t(30, 0), t(61, 0)); // October 2026
                                           // (resource, time, kind, to_state, detail): lives that start, change and end on either side.
    let ids: Vec<Uuid> = (0..5).map(|_| Uuid::now_v7()).collect();
    type Ev<'a> = (usize, DateTime<Utc>, &'a str, Option<&'a str>, Option<String>);
    let evs: Vec<Ev> = vec![
        // 0: set before the window, untouched in it (a later "note" without state or size).
        (0, t(1, 0), "created", Some("creating"), size(5)),
        (0, t(1, 10), "state_changed", Some("running"), size(5)),
        (0, t(10, 0), "resized", None, size(9)),
        (0, t(20, 0), "note", None, None),
        // 1: before and inside the window.
        (1, t(2, 0), "created", Some("creating"), size(3)),
        (1, t(2, 5), "state_changed", Some("running"), size(3)),
        (1, t(29, 86399), "state_changed", Some("stopped"), size(3)),
        (1, from, "state_changed", Some("running"), size(4)),
        (1, t(40, 0), "state_changed", Some("destroyed"), size(4)),
        // 2: only inside the window; 3: only after it; 4: destroyed before it.
        (2, t(35, 0), "created", Some("creating"), size(1)),
        (3, t(70, 0), "created", Some("creating"), size(1)),
        (4, t(3, 0), "created", Some("creating"), size(2)),
        (4, t(4, 0), "state_changed", Some("destroyed"), size(2)),
    ];
    let mut tx = store.begin().await.unwrap();
    for (i, when, kind, to_state, detail) in &evs {
        for project in [p.id, other.id] {
            let e = NewEvent {
                project_id: Some(project),
                resource_type: "instance",
                resource_id: if project == p.id { ids[*i] } else { Uuid::now_v7() },
                resource_name: "vm",
                kind,
                from_state: None,
                to_state: *to_state,
                cause: "test",
                detail: detail.clone(),
            };
            events::record_at(&mut tx, &e, *when).await.unwrap();
        }
    }
    tx.commit().await.unwrap();

    let whole = whole(store, p.id, t(90, 0)).await;
    assert!(stored_months(store, p.id).await.is_empty());
    let first = window(store, p.id, &INSTANCE, from, to).await;
    assert_eq!(fold(&first, from), fold_billable(&whole, from));
    assert_eq!(inside(&first, from, to), inside(&whole, from, to));
    // October's carry is stored (the month is long settled), once, and read from then on.
    assert_eq!(stored_months(store, p.id).await, [kumo_store::ts(from)]);
    let again = window(store, p.id, &INSTANCE, from, to).await;
    assert!(same(&first, &again), "{first:#?}\n{again:#?}");
    assert_eq!(stored_months(store, p.id).await, [kumo_store::ts(from)]);
    // Only the few carried events are read from before the window: resource 0's last state
    // change, last size and last event; resource 1's last event; destroyed resource 4 not at all.
    let before: Vec<&MeterRow> = first.iter().filter(|r| r.time < from).collect();
    assert_eq!(before.len(), 3 + 1, "{before:#?}");
    assert!(first.iter().all(|r| r.time < to && r.resource_id != ids[3] && r.resource_id != ids[4]));
    let resource_0 = fold(&first, from)[&ids[0]].clone();
    assert_eq!((resource_0.0, resource_0.2), (Some(EventState::Instance(InstanceState::Running)), t(20, 0)));
    assert!(resource_0.1.is_some_and(|d| d.contains(r#""disk_gib":9"#)));
    // A window starting inside the month: October's carry and October's events before it.
    let mid = t(37, 0);
    let part = window(store, p.id, &INSTANCE, mid, to).await;
    assert_eq!(fold(&part, mid), fold_billable(&whole, mid));
    assert_eq!(inside(&part, mid, to), inside(&whole, mid, to));
    // November: built from October's carry and October's events (resource 1 ended in October).
    let (nov, dec) = (t(61, 0), t(91, 0));
    let next = window(store, p.id, &INSTANCE, nov, dec).await;
    assert_eq!(fold(&next, nov), fold_billable(&whole, nov));
    assert_eq!(inside(&next, nov, dec), inside(&whole, nov, dec));
    assert!(!fold(&next, nov).contains_key(&ids[1]));
    assert_eq!(stored_months(store, p.id).await, [kumo_store::ts(from), kumo_store::ts(nov)]);
    // A window with no history before it is just its events.
    let early = window(store, p.id, &INSTANCE, t(0, 0), t(1, 5)).await;
    assert_eq!(early.len(), 1);
    // The other project's events never show.
    assert!(first.iter().chain(&next).all(|r| ids.contains(&r.resource_id)));
}

/// A small deterministic generator (xorshift), so a failure replays.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Random instance lives over five months (created, state changes, resizes, notes, some
/// destroyed — nothing after that, as the state machine has no way out of it), and windows read
/// in a random order (month starts, inside months, across several months), so carries are built
/// from scratch, from the previous month and from months further back: every window's carried
/// state equals the whole history's fold, and its events are the whole history's events in it.
async fn metering_carry_equals_the_whole_history_for_random_lives(store: &Store) {
    let p = create_project(store, "random").await;
    let start = at("2026-05-01T00:00:00Z");
    let span = 153 * 86400; // to 2026-10-01
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    const STATES: [&str; 7] = ["starting", "running", "rebooting", "stopping", "stopped", "failed", "deleting"];
    let mut tx = store.begin().await.unwrap();
    for _ in 0..60 {
        let id = Uuid::now_v7();
        let mut t = start + TimeDelta::seconds(rng.below(span) as i64);
        let mut gib = 1 + rng.below(20) as i64;
        let mut evs = vec![(t, "created", Some("creating"), size(gib))];
        for _ in 0..rng.below(12) {
            t += TimeDelta::seconds(1 + rng.below(20 * 86400) as i64);
            match rng.below(10) {
                0..=5 => evs.push((t, "state_changed", Some(STATES[rng.below(7) as usize]), size(gib))),
                6 | 7 => {
                    gib = 1 + rng.below(20) as i64;
                    evs.push((t, "resized", None, size(gib)));
                }
                8 => evs.push((t, "note", None, None)),
                _ => {
                    evs.push((t, "state_changed", Some("destroyed"), size(gib)));
                    break;
                }
            }
        }
        for (when, kind, to_state, detail) in evs {
            let e = NewEvent {
                project_id: Some(p.id),
                resource_type: "instance",
                resource_id: id,
                resource_name: "vm",
                kind,
                from_state: None,
                to_state,
                cause: "test",
                detail,
            };
            events::record_at(&mut tx, &e, when).await.unwrap();
        }
    }
    tx.commit().await.unwrap();
    let end = at("2027-01-01T00:00:00Z");
    let whole = whole(store, p.id, end).await;
    let month = |m: u32| at(&format!("2026-{m:02}-01T00:00:00Z"));
    let windows = [
        (month(8), month(9)),
        (month(6), month(7)),
        (month(9), month(10)),
        (month(7) + TimeDelta::days(9), month(8)),
        (month(10), month(12)),
        (month(5), month(6)),
        (month(9) + TimeDelta::hours(5), month(11) + TimeDelta::days(3)),
        (start - TimeDelta::days(40), month(6)),
        (month(11), end),
    ];
    for (from, to) in windows {
        let rows = window(store, p.id, &INSTANCE, from, to).await;
        assert_eq!(fold(&rows, from), fold_billable(&whole, from), "window [{from}, {to})");
        assert_eq!(inside(&rows, from, to), inside(&whole, from, to), "window [{from}, {to})");
    }
    assert!(stored_months(store, p.id).await.len() >= 6);
}

/// An event recorded with a past time drops the stored carry of the months after it (and only
/// those), and the next read rebuilds them with it.
async fn metering_carry_is_dropped_by_a_backdated_event(store: &Store) {
    let p = create_project(store, "late").await;
    let (sep, oct, nov) = (at("2026-09-01T00:00:00Z"), at("2026-10-01T00:00:00Z"), at("2026-11-01T00:00:00Z"));
    let record = |id: Uuid, when: DateTime<Utc>, to_state: &'static str| async move {
        let mut tx = store.begin().await.unwrap();
        let e = NewEvent {
            project_id: Some(p.id),
            resource_type: "instance",
            resource_id: id,
            resource_name: "vm",
            kind: "state_changed",
            from_state: None,
            to_state: Some(to_state),
            cause: "test",
            detail: size(2),
        };
        events::record_at(&mut tx, &e, when).await.unwrap();
        tx.commit().await.unwrap();
    };
    let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
    record(a, sep + TimeDelta::days(2), "running").await;
    window(store, p.id, &INSTANCE, oct, nov).await;
    window(store, p.id, &INSTANCE, nov, nov + TimeDelta::days(30)).await;
    window(store, p.id, &INSTANCE, sep, oct).await;
    assert_eq!(stored_months(store, p.id).await.len(), 3);
    // Late news from September 20th: `a` stopped, `b` started.
    record(a, sep + TimeDelta::days(19), "stopped").await;
    record(b, sep + TimeDelta::days(19), "running").await;
    assert_eq!(stored_months(store, p.id).await, [kumo_store::ts(sep)], "October's and November's carries are stale");
    let whole = whole(store, p.id, nov + TimeDelta::days(30)).await;
    for (from, to) in [(oct, nov), (nov, nov + TimeDelta::days(30))] {
        let rows = window(store, p.id, &INSTANCE, from, to).await;
        assert_eq!(fold(&rows, from), fold_billable(&whole, from));
        let state = |id: Uuid| fold(&rows, from).get(&id).and_then(|s| s.0);
        assert_eq!(state(a), Some(EventState::Instance(InstanceState::Stopped)));
        assert_eq!(state(b), Some(EventState::Instance(InstanceState::Running)));
    }
    assert_eq!(stored_months(store, p.id).await.len(), 3);
}

/// Metrics: a batch of raw rows (more than one INSERT chunk), 1-minute and 1-hour means computed
/// once each interval has ended, and pruning by retention, all at explicit times.
async fn metrics_batches_rollups_and_retention(store: &Store) {
    use kumo_store::metrics::{self, MetricRow, Resolution};
    let t0 = chrono::DateTime::parse_from_rfc3339("2026-11-27T10:00:00Z").unwrap().with_timezone(&chrono::Utc);
    let secs = chrono::TimeDelta::seconds;
    let ids: Vec<InstanceId> = (0..150).map(|_| InstanceId::new_v7()).collect();
    // Two rounds 30 s apart in the first minute, for 150 instances: cpu 10 then 30 → mean 20.
    for (i, cpu) in [(0, 10.0), (30, 30.0)] {
        let rows: Vec<MetricRow> = ids
            .iter()
            .map(|id| MetricRow { instance_id: *id, time: t0 + secs(i), values: [cpu, 1e6, 100.0, 200.0, 0.0, 0.0] })
            .collect();
        let mut tx = store.begin().await.unwrap();
        metrics::insert_raw(&mut tx, &rows).await.unwrap();
        tx.commit().await.unwrap();
    }
    let mut tx = store.begin().await.unwrap();
    // Nothing has ended at t0 + 59 s.
    let m = metrics::maintain(&mut tx, t0 + secs(59)).await.unwrap();
    assert_eq!((m.minute_rows, m.hour_rows, m.pruned), (0, 0, 0));
    let m = metrics::maintain(&mut tx, t0 + secs(61)).await.unwrap();
    assert_eq!(m.minute_rows, 150);
    // Computed once: a second call writes nothing.
    assert_eq!(metrics::maintain(&mut tx, t0 + secs(62)).await.unwrap().minute_rows, 0);
    tx.commit().await.unwrap();
    let mut conn = store.read().await.unwrap();
    let raw = metrics::series(&mut conn, ids[7], Resolution::Raw, "cpu", t0, t0 + secs(60)).await.unwrap();
    assert_eq!(raw, vec![(t0, 10.0), (t0 + secs(30), 30.0)]);
    let minute = metrics::series(&mut conn, ids[7], Resolution::Minute, "cpu", t0, t0 + secs(3600)).await.unwrap();
    assert_eq!(minute, vec![(t0, 20.0)]);
    let disk = metrics::series(&mut conn, ids[7], Resolution::Minute, "disk_write", t0, t0 + secs(60)).await.unwrap();
    assert_eq!(disk, vec![(t0, 200.0)]);
    assert!(metrics::series(&mut conn, ids[7], Resolution::Minute, "nope", t0, t0 + secs(60)).await.is_err());
    drop(conn);
    // After the hour: the hour's mean; after 1 h raw rows go, after 1 day minute rows go.
    let mut tx = store.begin().await.unwrap();
    let m = metrics::maintain(&mut tx, t0 + secs(3631)).await.unwrap();
    assert_eq!((m.hour_rows, m.pruned), (150, 300), "hour rollup, and both raw rounds pruned");
    let m = metrics::maintain(&mut tx, t0 + secs(86_400 + 61)).await.unwrap();
    assert_eq!(m.pruned, 150, "minute rows pruned after a day");
    tx.commit().await.unwrap();
    let mut conn = store.read().await.unwrap();
    let hour = metrics::series(&mut conn, ids[0], Resolution::Hour, "cpu", t0, t0 + secs(86_400)).await.unwrap();
    assert_eq!(hour, vec![(t0, 20.0)]);
    assert!(metrics::rows(&mut conn, Resolution::Minute, t0, t0 + secs(86_400)).await.unwrap().is_empty());
}
