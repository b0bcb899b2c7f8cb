//! Store tests: events, the metering window and metrics.
//!
//! Each case runs on SQLite and on PostgreSQL: see `common.rs`.

use crate::common::*;
use kumo_store::events::{self, EventState, NewEvent};
use kumo_store::Store;
use kumo_types::page::PageParams;
use kumo_types::{InstanceId, InstanceState, ProjectId};
use uuid::Uuid;

store_tests!(
    events_record_and_list,
    metering_window_carries_the_state_from_before_it,
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

/// `for_metering_window` reads the window's events and, per resource, the last events before it
/// that fix its state; folded per field (last value set wins), they give exactly the state the
/// whole history gives at the window's start. Typed read path and `Any` path agree.
async fn metering_window_carries_the_state_from_before_it(store: &Store) {
    use events::{Carry, MeterRow};
    let p = create_project(store, "meter").await;
    let other = create_project(store, "other").await;
    let t = |d: i64, s: i64| {
        chrono::DateTime::parse_from_rfc3339("2026-09-01T00:00:00Z").unwrap().with_timezone(&chrono::Utc)
            + chrono_seconds(d * 86400 + s)
    };
    let (from, to) = (t(30, 0), t(61, 0)); // October 2026
    let size =
        |gib: i64| Some(format!(r#"{{"instance_type":"k1-small","vcpus":1,"memory_mib":512,"disk_gib":{gib}}}"#));
    // (resource, time, kind, to_state, detail): lives that start, change and end on either side.
    let ids: Vec<Uuid> = (0..5).map(|_| Uuid::now_v7()).collect();
    type Ev<'a> = (usize, chrono::DateTime<chrono::Utc>, &'a str, Option<&'a str>, Option<String>);
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
    for (i, at, kind, to_state, detail) in &evs {
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
            events::record_at(&mut tx, &e, *at).await.unwrap();
        }
    }
    tx.commit().await.unwrap();

    // The state at `from` per resource, folded from rows before it: (last to_state, last detail, last time).
    type Folded = std::collections::BTreeMap<Uuid, (Option<EventState>, Option<String>, chrono::DateTime<chrono::Utc>)>;
    let fold = |rows: &[MeterRow]| -> Folded {
        let mut out = Folded::new();
        for r in rows.iter().filter(|r| r.time < from) {
            let e = out.entry(r.resource_id).or_insert((None, None, r.time));
            e.0 = r.to_state.or(e.0.take());
            e.1 = r.detail.clone().or(e.1.take());
            e.2 = r.time;
        }
        out
    };
    let inside = |rows: &[MeterRow]| -> Vec<(Uuid, chrono::DateTime<chrono::Utc>, Option<EventState>)> {
        rows.iter().filter(|r| r.time >= from).map(|r| (r.resource_id, r.time, r.to_state)).collect()
    };
    let mut conn = store.read().await.unwrap();
    let whole = events::for_metering(&mut conn, p.id, "instance", to).await.unwrap();
    let carry = [Carry::State, Carry::DetailWith("disk_gib")];
    let window = events::for_metering_window(&mut conn, p.id, "instance", &carry, from, to).await.unwrap();
    let fast = events::fast_for_metering_window(store, p.id, "instance", &carry, from, to).await.unwrap();
    drop(conn);
    assert_eq!(fold(&window), fold(&whole));
    assert_eq!(inside(&window), inside(&whole));
    // Only the few carried events are read from before the window (resource 0: the last state
    // change, the last size, the last event; resource 4's two events).
    assert!(window.iter().filter(|r| r.time < from).count() <= 3 + 3 + 2, "{window:#?}");
    assert!(window.iter().all(|r| r.time < to && r.resource_id != ids[3]));
    let resource_0 = fold(&window)[&ids[0]].clone();
    assert_eq!((resource_0.0, resource_0.2), (Some(EventState::Instance(InstanceState::Running)), t(20, 0)));
    assert!(resource_0.1.is_some_and(|d| d.contains(r#""disk_gib":9"#)));
    // Sorted by resource, then time.
    let key = |r: &MeterRow| (r.resource_id.to_string(), r.time);
    assert!(window.windows(2).all(|w| key(&w[0]) <= key(&w[1])), "{window:#?}");
    let same = |a: &[MeterRow], b: &[MeterRow]| {
        a.len() == b.len()
            && a.iter().zip(b).all(|(x, y)| {
                (x.resource_id, x.time, &x.kind, &x.to_state, &x.detail)
                    == (y.resource_id, y.time, &y.kind, &y.to_state, &y.detail)
            })
    };
    assert!(same(&window, &fast), "{window:#?}\n{fast:#?}");
    // A window with no history before it is just its events.
    let early = events::fast_for_metering_window(store, p.id, "instance", &carry, t(0, 0), t(1, 5)).await.unwrap();
    assert_eq!(early.len(), 1);
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
