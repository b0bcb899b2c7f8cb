//! Store tests of metering's read model (`kumo_store::metering`): the usage window reads only
//! the window's events and the state each resource carries across the month's start, and that
//! gives exactly what the whole history gives, on both databases.
//!
//! Each case runs on SQLite and on PostgreSQL, with the harness of `store.rs` (copied below until
//! the store tests share one in `tests/common`):
//!
//!     KUMO_TEST_POSTGRES_URL=$(scripts/postgres.sh | tail -n 1) cargo test -p kumo-store --test metering

use chrono::{DateTime, TimeDelta, Utc};
use kumo_store::events::{self, Carry, EventState, MeterRow, NewEvent};
use kumo_store::{projects, Backend, Store};
use kumo_types::{InstanceState, ProjectId, ProjectView};
use sqlx::{Connection, Executor};
use std::collections::BTreeMap;
use uuid::Uuid;

// ---------------------------------------------------------------------------------------------
// Cases
// ---------------------------------------------------------------------------------------------

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

async fn create_project(store: &Store, n: &str) -> ProjectView {
    let mut tx = store.begin().await.unwrap();
    let p = projects::create(&mut tx, n, &format!("project {n}")).await.unwrap();
    tx.commit().await.unwrap();
    p
}

// ---------------------------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------------------------

/// A store on a fresh database, and what it takes to throw that database away.
struct TestDb {
    store: Store,
    #[allow(dead_code)]
    url: String,
    cleanup: Cleanup,
}

enum Cleanup {
    /// The SQLite file lives in this directory, removed on drop.
    Sqlite(#[allow(dead_code)] tempfile::TempDir),
    /// `DROP DATABASE name WITH (FORCE)` through `admin_url`, unless already done.
    Postgres { admin_url: String, name: String, dropped: bool },
}

impl std::ops::Deref for TestDb {
    type Target = Store;
    fn deref(&self) -> &Store {
        &self.store
    }
}

impl TestDb {
    async fn sqlite() -> TestDb {
        let dir = tempfile::tempdir().expect("create a temporary directory");
        let url = format!("sqlite://{}", dir.path().join("kumo.db").display());
        let store = Store::open(&url).await.unwrap_or_else(|e| panic!("open {url}: {e}"));
        let db = TestDb { store, url, cleanup: Cleanup::Sqlite(dir) };
        assert_eq!(db.backend(), Backend::Sqlite);
        db
    }

    /// A fresh PostgreSQL database, or `None` (after saying why) when none is configured locally.
    async fn postgres() -> Option<TestDb> {
        let admin_url = match std::env::var("KUMO_TEST_POSTGRES_URL") {
            Ok(u) if !u.trim().is_empty() => u.trim().to_string(),
            _ => {
                if std::env::var_os("CI").is_some() || std::env::var_os("KUMO_TEST_STRICT").is_some() {
                    panic!(
                        "KUMO_TEST_POSTGRES_URL is not set, and CI is: the store tests must run on PostgreSQL too; \
                         set KUMO_TEST_POSTGRES_URL; scripts/postgres.sh prints it \
                         (KUMO_TEST_POSTGRES_URL=$(scripts/postgres.sh) cargo test -p kumo-store)"
                    );
                }
                println!(
                    "skipped: KUMO_TEST_POSTGRES_URL is not set, so only SQLite was tested \
                     (set KUMO_TEST_POSTGRES_URL; scripts/postgres.sh prints it)"
                );
                return None;
            }
        };
        sqlx::any::install_default_drivers();
        let name = format!("kumo_test_{}", Uuid::new_v4().simple());
        let mut admin = sqlx::AnyConnection::connect(&admin_url)
            .await
            .unwrap_or_else(|e| panic!("connect to KUMO_TEST_POSTGRES_URL={admin_url}: {e}"));
        // C collation: names sort byte-wise, as on SQLite (a locale collation orders "web-2" and "web1"
        // differently; docs/operations.md tells operators to create Kumo's database the same way).
        admin
            .execute(format!("CREATE DATABASE {name} TEMPLATE template0 LC_COLLATE 'C' LC_CTYPE 'C'").as_str())
            .await
            .unwrap_or_else(|e| panic!("CREATE DATABASE {name} through {admin_url}: {e}"));
        let _ = admin.close().await;
        // From here on the guard drops the database, whatever happens.
        let mut cleanup = Cleanup::Postgres { admin_url: admin_url.clone(), name: name.clone(), dropped: false };
        let url = with_database(&admin_url, &name);
        let store = match Store::open(&url).await {
            Ok(store) => store,
            Err(e) => {
                cleanup_now(&mut cleanup);
                panic!("open {url}: {e}");
            }
        };
        let db = TestDb { store, url, cleanup };
        assert_eq!(db.backend(), Backend::Postgres);
        Some(db)
    }

    /// Normal end of a test: close the pools, then drop the database (a failure to do so fails the
    /// test, and the guard tries once more).
    async fn finish(mut self) {
        self.store.close().await;
        if let Cleanup::Postgres { admin_url, name, dropped } = &mut self.cleanup {
            if let Err(e) = drop_database(admin_url, name).await {
                panic!("could not drop test database {name}: {e}");
            }
            *dropped = true;
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        cleanup_now(&mut self.cleanup);
    }
}

/// Synchronous cleanup (a test failed, or the store could not be opened): drops the database from a
/// thread with its own runtime, since the test's runtime may be unwinding.
fn cleanup_now(cleanup: &mut Cleanup) {
    if let Cleanup::Postgres { admin_url, name, dropped } = cleanup {
        if *dropped {
            return;
        }
        *dropped = true;
        let (admin_url, name) = (admin_url.clone(), name.clone());
        let joined =
            std::thread::spawn(move || match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(rt) => {
                    if let Err(e) = rt.block_on(drop_database(&admin_url, &name)) {
                        eprintln!("warning: could not drop test database {name}: {e}");
                    }
                }
                Err(e) => eprintln!("cannot drop test database {name}: no runtime: {e}"),
            })
            .join();
        if joined.is_err() {
            eprintln!("dropping the test database panicked");
        }
    }
}

async fn drop_database(admin_url: &str, name: &str) -> Result<(), sqlx::Error> {
    let mut admin = sqlx::AnyConnection::connect(admin_url).await?;
    admin.execute(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str()).await?;
    admin.close().await
}

/// `postgres://u:p@host:port/whatever?opts` with its database replaced by `db`.
fn with_database(url: &str, db: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, format!("?{q}")),
        None => (url, String::new()),
    };
    let authority_start = base.find("://").map(|i| i + 3).unwrap_or(0);
    let authority_end = base[authority_start..].find('/').map(|i| authority_start + i).unwrap_or(base.len());
    format!("{}/{db}{query}", &base[..authority_end])
}

/// One test per (case, backend): `<case>::sqlite` and `<case>::postgres`.
macro_rules! store_tests {
    ($($case:ident),* $(,)?) => {$(
        mod $case {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let db = super::TestDb::sqlite().await;
                super::$case(&db).await;
                db.finish().await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                let Some(db) = super::TestDb::postgres().await else { return };
                super::$case(&db).await;
                db.finish().await;
            }
        }
    )*};
}

store_tests!(
    metering_window_carries_the_state_from_before_it,
    metering_carry_equals_the_whole_history_for_random_lives,
    metering_carry_is_dropped_by_a_backdated_event,
);
