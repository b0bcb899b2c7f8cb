//! The store test suite, run on both databases.
//!
//! Every case is written once, as an `async fn` taking a `&Store` (or the whole [`TestDb`] when it
//! needs the database URL), and `store_tests!` turns it into two tests: `<case>::sqlite` on a fresh
//! SQLite file in a temporary directory, and `<case>::postgres` on a fresh PostgreSQL database
//! `kumo_test_<random>` created through `KUMO_TEST_POSTGRES_URL` (what `scripts/postgres.sh`
//! prints) and dropped afterwards, also when the test fails.
//!
//! Without `KUMO_TEST_POSTGRES_URL` the PostgreSQL tests fail when `CI` is set, and are skipped
//! with a printed reason otherwise.
//!
//!     KUMO_TEST_POSTGRES_URL=$(scripts/postgres.sh) cargo test -p kumo-store --test store

use kumo_store::events::{self, EventState, NewEvent};
use kumo_store::hosts::{self, HostReport, Resources};
use kumo_store::images::{self, NewImage};
use kumo_store::instances::{self, InstanceRecord, NewInstance};
use kumo_store::{instance_types, projects, tokens, Backend, Store, StoreError};
use kumo_types::page::{PageParams, PageRequest, SortBy};
use kumo_types::{
    BackupId, HostId, HostView, ImageBoot, ImageFacts, ImageId, InstanceId, InstanceState, InstanceTypeCreate,
    InstanceTypeView, InvoiceId, Name, NameOrId, ProjectId, ProjectView, ResultsPage, SecurityGroupId, SnapshotId,
    VolumeId,
};
use sqlx::{Connection, Executor};
use std::collections::HashSet;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use uuid::Uuid;

// ---------------------------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------------------------

/// A store on a fresh database, and what it takes to throw that database away.
struct TestDb {
    store: Store,
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
    migrations_apply_twice,
    projects_get_and_paginate,
    names_unique_among_live_rows,
    instance_types_seed_defaults_idempotent,
    hosts_upsert_reserve_release,
    hosts_concurrent_reservations_never_overshoot,
    instances_lifecycle,
    images_visibility_and_shadowing,
    images_list_paginates_through_shadowed_names,
    events_record_and_list,
    tokens_insert_and_lookup,
    identity_users_tokens_and_audit,
    quotas_charge_conditionally_and_never_overshoot,
    billing_prices_invoices_budgets_and_metering_events,
    metrics_batches_rollups_and_retention,
    volumes_snapshots_and_backups,
    network_ipam_concurrent_and_queries,
    hosts_keyed_by_their_id_and_the_cloud_id,
    vpc_zones_and_vnis_are_reused_distinct_and_bounded,
);

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

fn name(s: &str) -> Name {
    Name::parse(s).unwrap_or_else(|e| panic!("{e}"))
}

fn by_name(s: &str) -> NameOrId {
    NameOrId::Name(name(s))
}

const SORTS: [SortBy; 3] = [SortBy::NameAscending, SortBy::NameDescending, SortBy::IdAscending];

/// Follows `next_page` from the first page to the last, checking the page shapes on the way:
/// every page but the last is full and has a token, the last one has none. Returns the pages.
async fn all_pages<T, F, Fut>(limit: u32, sort_by: SortBy, mut fetch: F) -> Vec<Vec<T>>
where
    F: FnMut(PageRequest) -> Fut,
    Fut: Future<Output = ResultsPage<T>>,
{
    let mut params = PageParams { limit: Some(limit), page_token: None, sort_by: Some(sort_by) };
    let mut pages = Vec::new();
    loop {
        let req = params.validate().unwrap_or_else(|e| panic!("page params {params:?}: {e}"));
        assert_eq!(req.sort_by, sort_by);
        let page = fetch(req).await;
        assert!(page.items.len() <= limit as usize, "page longer than the limit {limit}");
        let done = page.next_page.is_none();
        if !done {
            assert_eq!(page.items.len(), limit as usize, "a page with a next_page token must be full");
        }
        pages.push(page.items);
        match page.next_page {
            None => return pages,
            Some(token) => {
                assert!(pages.len() < 100, "pagination does not end (page {})", pages.len());
                params = PageParams { limit: Some(limit), page_token: Some(token), sort_by: Some(sort_by) };
            }
        }
    }
}

async fn create_project(store: &Store, n: &str) -> ProjectView {
    let mut tx = store.begin().await.unwrap();
    let p = projects::create(&mut tx, n, &format!("project {n}")).await.unwrap();
    tx.commit().await.unwrap();
    p
}

async fn create_type(store: &Store, n: &str, r: Resources) -> InstanceTypeView {
    let params = InstanceTypeCreate {
        name: name(n),
        description: format!("type {n}"),
        vcpus: r.vcpus,
        memory_mib: r.memory_mib,
        disk_gib: r.disk_gib,
        gpus: r.gpus,
    };
    let mut tx = store.begin().await.unwrap();
    let t = instance_types::create(&mut tx, &params).await.unwrap();
    tx.commit().await.unwrap();
    t
}

fn report(n: &str, total: Resources, cpu_oc: f64, mem_oc: f64, disk_oc: f64) -> HostReport {
    HostReport {
        name: n.into(),
        driver: "sim".into(),
        accelerator: "none".into(),
        accelerator_reason: "test host".into(),
        total,
        cpu_overcommit: cpu_oc,
        memory_overcommit: mem_oc,
        disk_overcommit: disk_oc,
    }
}

async fn upsert_host(store: &Store, r: &HostReport) -> HostView {
    let mut tx = store.begin().await.unwrap();
    let h = hosts::upsert(&mut tx, r).await.unwrap();
    tx.commit().await.unwrap();
    h
}

async fn get_host(store: &Store, id: HostId) -> HostView {
    let mut c = store.read().await.unwrap();
    hosts::get(&mut c, &NameOrId::Id(id.get())).await.unwrap().expect("host exists")
}

fn used(h: &HostView) -> Resources {
    Resources { vcpus: h.vcpus_used, memory_mib: h.memory_mib_used, disk_gib: h.disk_gib_used, gpus: h.gpus_used }
}

async fn create_image(store: &Store, project_id: Option<ProjectId>, n: &str) -> images::ImageRecord {
    let id = images::allocate_id();
    let disk = format!("/var/lib/kumo/images/{id}.qcow2");
    let new = NewImage {
        id,
        project_id,
        name: n,
        description: "test image",
        os: "linux",
        boot: ImageBoot::Disk,
        disk_path: &disk,
        kernel_path: None,
        initrd_path: None,
        cmdline: None,
        size_bytes: 1 << 30,
        facts: ImageFacts {
            os_family: Some("debian".into()),
            os_version: Some("12".into()),
            default_user: Some("debian".into()),
            min_memory_mib: Some(512),
            min_disk_gib: None,
        },
    };
    let mut tx = store.begin().await.unwrap();
    let rec = images::insert(&mut tx, &new).await.unwrap();
    tx.commit().await.unwrap();
    // The OS facts come back as stored (a null one too).
    assert_eq!(rec.view.os_facts, new.facts);
    rec
}

/// What an instance needs around it: a project, an image, a type and a host with room.
struct Fixture {
    project: ProjectView,
    image: images::ImageRecord,
    itype: InstanceTypeView,
    host: HostView,
}

const SMALL: Resources = Resources { vcpus: 1, memory_mib: 512, disk_gib: 5, gpus: 0 };

async fn fixture(store: &Store, project: &str) -> Fixture {
    let project = create_project(store, project).await;
    let image = create_image(store, None, &format!("{}-img", project.name)).await;
    let itype = create_type(store, &format!("{}-type", project.name), SMALL).await;
    let host = upsert_host(
        store,
        &report(
            &format!("{}-host", project.name),
            Resources { vcpus: 16, memory_mib: 16384, disk_gib: 500, gpus: 0 },
            1.0,
            1.0,
            1.0,
        ),
    )
    .await;
    Fixture { project, image, itype, host }
}

/// Reserves capacity and inserts the instance in one transaction, as the control plane does.
async fn try_create_instance(
    store: &Store,
    f: &Fixture,
    project_id: ProjectId,
    n: &str,
) -> Result<InstanceId, StoreError> {
    let id = InstanceId::new_v7();
    let mut tx = store.begin().await?;
    assert!(hosts::reserve(&mut tx, f.host.id, SMALL).await?, "fixture host is full");
    instances::insert(
        &mut tx,
        &NewInstance {
            id,
            project_id,
            name: n,
            description: "test instance",
            image_id: f.image.view.id,
            instance_type_id: f.itype.id,
            host_id: f.host.id,
            resources: SMALL,
            user_data: Some("#cloud-config\n"),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(id)
}

async fn create_instance(store: &Store, f: &Fixture, n: &str) -> InstanceRecord {
    let id = try_create_instance(store, f, f.project.id, n).await.unwrap();
    get_instance(store, f.project.id, id).await.expect("instance just inserted")
}

async fn get_instance(store: &Store, project_id: ProjectId, id: InstanceId) -> Option<InstanceRecord> {
    let mut c = store.read().await.unwrap();
    instances::get(&mut c, project_id, &NameOrId::Id(id.get())).await.unwrap()
}

/// The id of the image `sel` finds from `project_id`.
async fn image_id(store: &Store, project_id: Option<ProjectId>, sel: NameOrId) -> Option<ImageId> {
    let mut c = store.read().await.unwrap();
    images::get(&mut c, project_id, &sel).await.unwrap().map(|r| r.view.id)
}

/// (name, project) of every image listed from `project_id`, in one page.
async fn visible_images(store: &Store, project_id: Option<ProjectId>) -> Vec<(String, Option<String>)> {
    let mut c = store.read().await.unwrap();
    let page = images::list(&mut c, project_id, &PageParams::default().validate().unwrap()).await.unwrap();
    assert!(page.next_page.is_none());
    page.items.into_iter().map(|i| (i.name, i.project)).collect()
}

fn assert_conflict<T: std::fmt::Debug>(r: Result<T, StoreError>, what: &str) {
    match r {
        Err(StoreError::Conflict(_)) => {}
        other => panic!("{what}: expected StoreError::Conflict, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Cases
// ---------------------------------------------------------------------------------------------

async fn migrations_apply_twice(db: &TestDb) {
    // (versions applied, how many are marked failed)
    let migrations = |s: Store| async move {
        let versions: Vec<i64> = sqlx::query_scalar("SELECT version FROM _sqlx_migrations ORDER BY version")
            .fetch_all(s.reader())
            .await
            .unwrap();
        let failed: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations WHERE NOT success")
            .fetch_one(s.reader())
            .await
            .unwrap();
        (versions, failed)
    };
    let applied = migrations(db.store.clone()).await;
    assert!(!applied.0.is_empty(), "no migration recorded");
    assert_eq!(applied.1, 0, "a migration is marked failed");
    let p = create_project(db, "before-reopen").await;

    // Open the same database again while the first store is still open, then once more after.
    let again = Store::open(&db.url).await.unwrap_or_else(|e| panic!("second open of {}: {e}", db.url));
    assert_eq!(migrations(again.clone()).await, applied, "the second open changed the migrations");
    let mut c = again.read().await.unwrap();
    let seen = projects::get(&mut c, &by_name("before-reopen")).await.unwrap().expect("data survives reopening");
    assert_eq!(seen.id, p.id);
    drop(c);
    // Both handles write to the same database.
    create_project(&again, "after-reopen").await;
    again.close().await;

    let third = Store::open(&db.url).await.unwrap_or_else(|e| panic!("third open of {}: {e}", db.url));
    assert_eq!(migrations(third.clone()).await, applied);
    let mut c = third.read().await.unwrap();
    let page = projects::list(&mut c, &PageParams::default().validate().unwrap()).await.unwrap();
    let names: Vec<&str> = page.items.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["after-reopen", "before-reopen"]);
    drop(c);
    third.close().await;
}

async fn projects_get_and_paginate(store: &Store) {
    // Created in an order that is neither the name order nor its reverse.
    let names = ["golf", "alpha", "echo", "bravo", "web-2", "charlie", "web1"];
    let mut created = Vec::new();
    for n in names {
        let p = create_project(store, n).await;
        assert_eq!(p.name, n);
        assert_eq!(p.description, format!("project {n}"));
        assert_eq!(p.time_created, p.time_modified);
        created.push(p);
    }

    let mut c = store.read().await.unwrap();
    for p in &created {
        let a = projects::get(&mut c, &by_name(&p.name)).await.unwrap().expect("get by name");
        let b = projects::get(&mut c, &NameOrId::Id(p.id.get())).await.unwrap().expect("get by id");
        assert_eq!((a.id, a.name.as_str(), a.time_created), (p.id, p.name.as_str(), p.time_created));
        assert_eq!((b.id, b.name.as_str(), b.time_created), (p.id, p.name.as_str(), p.time_created));
    }
    assert!(projects::get(&mut c, &by_name("nope")).await.unwrap().is_none());
    assert!(projects::get(&mut c, &NameOrId::Id(Uuid::now_v7())).await.unwrap().is_none());
    drop(c);

    let mut by_name_asc: Vec<(String, ProjectId)> = created.iter().map(|p| (p.name.clone(), p.id)).collect();
    by_name_asc.sort();
    let mut by_id: Vec<(String, ProjectId)> = created.iter().map(|p| (p.name.clone(), p.id)).collect();
    by_id.sort_by_key(|(_, id)| id.to_string());
    // Ids are time-ordered: the id order is the creation order.
    assert_eq!(by_id.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(), names);

    for sort in SORTS {
        let expected: Vec<(String, ProjectId)> = match sort {
            SortBy::NameAscending => by_name_asc.clone(),
            SortBy::NameDescending => by_name_asc.iter().rev().cloned().collect(),
            SortBy::IdAscending => by_id.clone(),
        };
        for limit in [3, 1, 7, 100] {
            let pages = all_pages(limit, sort, |req| async move {
                let mut c = store.read().await.unwrap();
                projects::list(&mut c, &req).await.unwrap()
            })
            .await;
            let sizes: Vec<usize> = pages.iter().map(Vec::len).collect();
            let want_sizes: Vec<usize> = match limit {
                3 => vec![3, 3, 1],
                1 => vec![1; 7],
                _ => vec![7],
            };
            assert_eq!(sizes, want_sizes, "page sizes for limit {limit}, {sort:?}");
            let got: Vec<(String, ProjectId)> = pages.into_iter().flatten().map(|p| (p.name, p.id)).collect();
            assert_eq!(got, expected, "limit {limit}, {sort:?}: every project exactly once, in order");
        }
    }

    // A list ending exactly on a page boundary: the last full page has no token.
    let mut tx = store.begin().await.unwrap();
    assert!(projects::soft_delete(&mut tx, created[0].id).await.unwrap());
    tx.commit().await.unwrap();
    let pages = all_pages(3, SortBy::IdAscending, |req| async move {
        let mut c = store.read().await.unwrap();
        projects::list(&mut c, &req).await.unwrap()
    })
    .await;
    assert_eq!(pages.iter().map(Vec::len).collect::<Vec<_>>(), [3, 3]);
    let got: Vec<ProjectId> = pages.into_iter().flatten().map(|p| p.id).collect();
    assert_eq!(got, by_id[1..].iter().map(|(_, id)| *id).collect::<Vec<_>>(), "deleted project not listed");
}

async fn names_unique_among_live_rows(store: &Store) {
    let first = create_project(store, "dup").await;
    let mut tx = store.begin().await.unwrap();
    assert_conflict(projects::create(&mut tx, "dup", "again").await, "second live project named dup");
    drop(tx);

    // The refused insert changed nothing.
    let mut c = store.read().await.unwrap();
    let page = projects::list(&mut c, &PageParams::default().validate().unwrap()).await.unwrap();
    assert_eq!(page.items.iter().map(|p| p.id).collect::<Vec<_>>(), [first.id]);
    drop(c);

    // A project with a live image cannot be deleted (the API checks this count).
    let img = create_image(store, Some(first.id), "own").await;
    let mut c = store.read().await.unwrap();
    assert_eq!(projects::count_children(&mut c, first.id).await.unwrap(), 1);
    drop(c);
    let mut tx = store.begin().await.unwrap();
    assert!(images::soft_delete(&mut tx, img.view.id).await.unwrap());
    assert!(!images::soft_delete(&mut tx, img.view.id).await.unwrap(), "second soft delete is a no-op");
    assert_eq!(projects::count_children(&mut tx, first.id).await.unwrap(), 0);
    assert!(projects::soft_delete(&mut tx, first.id).await.unwrap());
    assert!(!projects::soft_delete(&mut tx, first.id).await.unwrap(), "second soft delete is a no-op");
    tx.commit().await.unwrap();

    let mut c = store.read().await.unwrap();
    assert!(projects::get(&mut c, &by_name("dup")).await.unwrap().is_none(), "deleted project by name");
    assert!(projects::get(&mut c, &NameOrId::Id(first.id.get())).await.unwrap().is_none(), "deleted project by id");
    drop(c);

    // The name is free again, for a new project with a new id.
    let second = create_project(store, "dup").await;
    assert_ne!(second.id, first.id);
    let mut c = store.read().await.unwrap();
    assert_eq!(projects::get(&mut c, &by_name("dup")).await.unwrap().map(|p| p.id), Some(second.id));
    drop(c);

    // The same holds for images (per project, and among public ones) and instance types.
    create_image(store, Some(second.id), "own").await;
    let mut tx = store.begin().await.unwrap();
    let dup = NewImage {
        id: images::allocate_id(),
        project_id: Some(second.id),
        name: "own",
        description: "",
        os: "linux",
        boot: ImageBoot::Kernel,
        disk_path: "/x",
        kernel_path: Some("/k"),
        initrd_path: Some("/i"),
        cmdline: Some("console=ttyS0"),
        size_bytes: 1,
        facts: ImageFacts::default(),
    };
    assert_conflict(images::insert(&mut tx, &dup).await, "second image named own in a project");
    drop(tx);
    create_image(store, None, "pub").await;
    let mut tx = store.begin().await.unwrap();
    let dup_public = NewImage { id: images::allocate_id(), project_id: None, name: "pub", ..dup.clone() };
    assert_conflict(images::insert(&mut tx, &dup_public).await, "second public image named pub");
    drop(tx);
    // A project image may share a public image's name.
    let mut tx = store.begin().await.unwrap();
    let shadow = NewImage { id: images::allocate_id(), project_id: Some(second.id), name: "pub", ..dup.clone() };
    let rec = images::insert(&mut tx, &shadow).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(rec.kernel_path.as_deref(), Some("/k"));
    assert_eq!(rec.view.boot, ImageBoot::Kernel);

    let t = create_type(store, "plan", SMALL).await;
    let mut tx = store.begin().await.unwrap();
    let again = InstanceTypeCreate {
        name: name("plan"),
        description: String::new(),
        vcpus: 2,
        memory_mib: 2,
        disk_gib: 2,
        gpus: 0,
    };
    assert_conflict(instance_types::create(&mut tx, &again).await, "second instance type named plan");
    drop(tx);
    let mut tx = store.begin().await.unwrap();
    assert!(instance_types::soft_delete(&mut tx, t.id).await.unwrap());
    let replaced = instance_types::create(&mut tx, &again).await.unwrap();
    tx.commit().await.unwrap();
    assert_ne!(replaced.id, t.id);
    assert_eq!(replaced.vcpus, 2);
}

async fn instance_types_seed_defaults_idempotent(store: &Store) {
    for _ in 0..2 {
        let mut tx = store.begin().await.unwrap();
        instance_types::seed_defaults(&mut tx).await.unwrap();
        tx.commit().await.unwrap();
    }
    let mut c = store.read().await.unwrap();
    let page = instance_types::list(&mut c, &PageParams::default().validate().unwrap()).await.unwrap();
    assert!(page.next_page.is_none());
    let mut expected: Vec<_> = instance_types::DEFAULTS.to_vec();
    expected.sort_by_key(|d| d.0);
    assert_eq!(page.items.len(), expected.len(), "seeding twice must not duplicate the catalogue");
    for (t, (n, vcpus, memory_mib, disk_gib, gpus, description)) in page.items.iter().zip(&expected) {
        assert_eq!(
            (t.name.as_str(), t.vcpus, t.memory_mib, t.disk_gib, t.gpus, t.description.as_str()),
            (*n, *vcpus, *memory_mib, *disk_gib, *gpus, *description)
        );
        let g = instance_types::get_by_name(&mut c, n).await.unwrap().expect("get_by_name");
        assert_eq!(g.id, t.id);
        assert_eq!(instance_types::count_users(&mut c, t.id).await.unwrap(), 0);
    }
    assert!(instance_types::get_by_name(&mut c, "k9-huge").await.unwrap().is_none());
    drop(c);

    // An operator's deletion sticks: seeding only fills a table that never held anything.
    let nano = page.items.iter().find(|t| t.name == "k1-nano").expect("k1-nano is a default");
    let mut tx = store.begin().await.unwrap();
    assert!(instance_types::soft_delete(&mut tx, nano.id).await.unwrap());
    instance_types::seed_defaults(&mut tx).await.unwrap();
    tx.commit().await.unwrap();
    let mut c = store.read().await.unwrap();
    let page = instance_types::list(&mut c, &PageParams::default().validate().unwrap()).await.unwrap();
    assert_eq!(page.items.len(), expected.len() - 1);
    assert!(instance_types::get_by_name(&mut c, "k1-nano").await.unwrap().is_none());
}

async fn hosts_upsert_reserve_release(store: &Store) {
    let total = Resources { vcpus: 3, memory_mib: 4096, disk_gib: 100, gpus: 1 };
    let h = upsert_host(store, &report("node1", total, 1.5, 2.0, 1.0)).await;
    // Limits are total × overcommit, rounded down; GPUs are never overcommitted.
    assert_eq!((h.vcpus_total, h.memory_mib_total, h.disk_gib_total, h.gpus_total), (3, 4096, 100, 1));
    assert_eq!((h.vcpus_limit, h.memory_mib_limit, h.disk_gib_limit), (4, 8192, 100));
    assert_eq!(used(&h), Resources::default());
    assert_eq!((h.cpu_overcommit, h.memory_overcommit, h.disk_overcommit), (1.5, 2.0, 1.0));
    assert_eq!((h.driver.as_str(), h.accelerator.as_str()), ("sim", "none"));

    let reserve = |r: Resources| async move {
        let mut tx = store.begin().await.unwrap();
        let ok = hosts::reserve(&mut tx, h.id, r).await.unwrap();
        tx.commit().await.unwrap();
        ok
    };
    let part = Resources { vcpus: 1, memory_mib: 1000, disk_gib: 40, gpus: 0 };
    assert!(reserve(part).await);
    assert_eq!(used(&get_host(store, h.id).await), part);

    // Exactly up to every limit is fine.
    let rest = Resources { vcpus: 3, memory_mib: 7192, disk_gib: 60, gpus: 1 };
    assert!(reserve(rest).await, "filling the host exactly to its limits must succeed");
    let full = Resources { vcpus: 4, memory_mib: 8192, disk_gib: 100, gpus: 1 };
    assert_eq!(used(&get_host(store, h.id).await), full);

    // One more of any single resource is refused, and the refusal changes nothing.
    for extra in [
        Resources { vcpus: 1, ..Default::default() },
        Resources { memory_mib: 1, ..Default::default() },
        Resources { disk_gib: 1, ..Default::default() },
        Resources { gpus: 1, ..Default::default() },
    ] {
        assert!(!reserve(extra).await, "reserving {extra:?} on a full host must be refused");
        assert_eq!(used(&get_host(store, h.id).await), full, "a refused reservation changed the host");
    }
    // Unknown host: refused, not an error.
    let mut tx = store.begin().await.unwrap();
    assert!(!hosts::reserve(&mut tx, HostId::new_v7(), part).await.unwrap());
    drop(tx);

    // Re-registering refreshes what the host reports but keeps its reservations and its id.
    let h2 = upsert_host(store, &report("node1", Resources { vcpus: 8, ..total }, 1.0, 2.0, 2.0)).await;
    assert_eq!(h2.id, h.id);
    assert_eq!(used(&h2), full, "upsert must keep the reservations");
    assert_eq!((h2.vcpus_total, h2.vcpus_limit, h2.memory_mib_limit, h2.disk_gib_limit), (8, 8, 8192, 200));
    assert_eq!(h2.time_created, h.time_created);
    let mut c = store.read().await.unwrap();
    let all = hosts::all(&mut c).await.unwrap();
    assert_eq!(all.iter().map(|h| h.id).collect::<Vec<_>>(), [h.id], "upsert must not add a second host");
    drop(c);
    // The new limits apply: there is vCPU and disk room again, but memory is still full.
    assert!(!reserve(Resources { vcpus: 1, memory_mib: 1, ..Default::default() }).await);
    assert!(reserve(Resources { vcpus: 4, disk_gib: 100, ..Default::default() }).await);

    // Release gives capacity back.
    let mut tx = store.begin().await.unwrap();
    hosts::release(&mut tx, h.id, rest).await.unwrap();
    hosts::release(&mut tx, h.id, Resources { vcpus: 4, disk_gib: 100, ..Default::default() }).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(used(&get_host(store, h.id).await), part);
    assert!(reserve(Resources { gpus: 1, ..Default::default() }).await, "the released GPU is free again");

    // A second host, listed by name.
    upsert_host(store, &report("node0", total, 1.0, 1.0, 1.0)).await;
    let mut c = store.read().await.unwrap();
    let names: Vec<String> = hosts::all(&mut c).await.unwrap().into_iter().map(|h| h.name).collect();
    assert_eq!(names, ["node0", "node1"]);
    let page =
        hosts::list(&mut c, &PageParams { limit: Some(1), ..Default::default() }.validate().unwrap()).await.unwrap();
    assert_eq!(page.items.len(), 1);
    assert_eq!(page.items[0].name, "node0");
    assert!(page.next_page.is_some());
}

async fn hosts_concurrent_reservations_never_overshoot(store: &Store) {
    let size = Resources { vcpus: 2, memory_mib: 1024, disk_gib: 10, gpus: 0 };
    // Room for exactly 7 in every dimension.
    let total = Resources { vcpus: 14, memory_mib: 7 * 1024, disk_gib: 70, gpus: 0 };
    let h = upsert_host(store, &report("busy", total, 1.0, 1.0, 1.0)).await;
    let project = create_project(store, "racers").await;

    const TASKS: usize = 20;
    // Make the transactions really overlap: the first ones to get a write connection wait for each
    // other inside their transaction, then all race. That is as many as the write pool holds: one
    // on SQLite (whose single writer is what serialises reservations there), the pool's size on
    // PostgreSQL (where the conditional UPDATE must hold on its own).
    let overlap = match store.backend() {
        Backend::Sqlite => 1,
        Backend::Postgres => TASKS.min(store.reader().options().get_max_connections() as usize),
    };
    let barrier = Arc::new(tokio::sync::Barrier::new(overlap));
    let arrived = Arc::new(AtomicUsize::new(0));
    let mut handles = Vec::new();
    for i in 0..TASKS {
        let store = store.clone();
        let (barrier, arrived) = (barrier.clone(), arrived.clone());
        handles.push(tokio::spawn(async move {
            let mut tx = store.begin().await?;
            if arrived.fetch_add(1, Ordering::SeqCst) < overlap {
                // The first statement makes sure the transaction is open on the server.
                sqlx::query("SELECT 1").execute(&mut *tx).await?;
                barrier.wait().await;
            }
            let ok = hosts::reserve(&mut tx, h.id, size).await?;
            if ok {
                // Something else in the same transaction, as when an instance is created.
                events::record(
                    &mut tx,
                    &NewEvent {
                        project_id: Some(project.id),
                        resource_type: "host",
                        resource_id: h.id.get(),
                        resource_name: "busy",
                        kind: "reserved",
                        from_state: None,
                        to_state: None,
                        cause: &format!("task {i}"),
                        detail: None,
                    },
                )
                .await?;
            }
            tx.commit().await?;
            Ok::<bool, StoreError>(ok)
        }));
    }
    let mut granted = 0;
    for handle in handles {
        match handle.await.expect("task panicked") {
            Ok(true) => granted += 1,
            Ok(false) => {}
            Err(e) => panic!("a concurrent reservation failed with an error instead of a refusal: {e}"),
        }
    }
    assert_eq!(granted, 7, "exactly 7 reservations fit");
    let after = get_host(store, h.id).await;
    assert_eq!(
        used(&after),
        Resources { vcpus: 7 * 2, memory_mib: 7 * 1024, disk_gib: 7 * 10, gpus: 0 },
        "used must be exactly 7 × size"
    );
    let mut c = store.read().await.unwrap();
    let evs =
        events::list(&mut c, project.id, Some(h.id.get()), &PageParams::default().validate().unwrap()).await.unwrap();
    assert_eq!(evs.items.len(), 7, "one event per granted reservation, none from refused ones");
}

async fn instances_lifecycle(store: &Store) {
    let f = fixture(store, "acme").await;
    let web1 = create_instance(store, &f, "web1").await;
    let v = &web1.view;
    assert_eq!((v.name.as_str(), v.project.as_str()), ("web1", "acme"));
    assert_eq!(
        (v.image.as_str(), v.instance_type.as_str(), v.host.as_deref()),
        ("acme-img", "acme-type", Some("acme-host"))
    );
    assert_eq!(v.state, InstanceState::Creating);
    assert_eq!(v.state_reason, None);
    assert_eq!(web1.generation, 1);
    assert_eq!(web1.resources(), SMALL);
    assert_eq!(web1.user_data.as_deref(), Some("#cloud-config\n"));
    assert_eq!(
        (web1.project_id, web1.image_id, web1.instance_type_id, web1.host_id),
        (f.project.id, f.image.view.id, f.itype.id, f.host.id)
    );
    assert_eq!(used(&get_host(store, f.host.id).await), SMALL);

    let mut c = store.read().await.unwrap();
    let named = instances::get(&mut c, f.project.id, &by_name("web1")).await.unwrap().expect("get by name");
    assert_eq!(named.view.id, web1.view.id);
    let any = instances::get_by_id(&mut c, web1.view.id).await.unwrap().expect("get_by_id");
    assert_eq!(any.view.name, "web1");
    // Not visible from another project.
    let other = create_project(store, "other").await;
    assert!(instances::get(&mut c, other.id, &NameOrId::Id(web1.view.id.get())).await.unwrap().is_none());
    assert!(instances::get(&mut c, other.id, &by_name("web1")).await.unwrap().is_none());
    drop(c);

    // Names are unique per project among live instances; another project may reuse one.
    assert_conflict(try_create_instance(store, &f, f.project.id, "web1").await, "second live web1 in acme");
    try_create_instance(store, &f, other.id, "web1").await.unwrap();
    let web0 = create_instance(store, &f, "web0").await;
    let db = create_instance(store, &f, "db").await;

    // Listing: acme's three instances, in every order, over pages of 2.
    let mut expected_by_name = vec![db.view.id, web0.view.id, web1.view.id];
    for sort in SORTS {
        let pages = all_pages(2, sort, |req| async move {
            let mut c = store.read().await.unwrap();
            instances::list(&mut c, f.project.id, &req).await.unwrap()
        })
        .await;
        assert_eq!(pages.iter().map(Vec::len).collect::<Vec<_>>(), [2, 1]);
        let got: Vec<InstanceId> = pages.into_iter().flatten().map(|r| r.view.id).collect();
        let want = match sort {
            SortBy::NameAscending => expected_by_name.clone(),
            SortBy::NameDescending => expected_by_name.iter().rev().copied().collect(),
            SortBy::IdAscending => vec![web1.view.id, web0.view.id, db.view.id],
        };
        assert_eq!(got, want, "{sort:?}");
    }
    let mut c = store.read().await.unwrap();
    let on_host: Vec<InstanceId> =
        instances::on_host(&mut c, f.host.id).await.unwrap().iter().map(|r| r.view.id).collect();
    assert_eq!(on_host.len(), 4, "acme's three and other's one");
    assert!(on_host.windows(2).all(|w| w[0].to_string() < w[1].to_string()), "on_host is in id order");
    drop(c);

    // Compare-and-set of the state.
    let mut tx = store.begin().await.unwrap();
    assert!(instances::set_state(&mut tx, web1.view.id, 1, InstanceState::Starting, None).await.unwrap());
    tx.commit().await.unwrap();
    let s = get_instance(store, f.project.id, web1.view.id).await.unwrap();
    assert_eq!((s.view.state, s.generation), (InstanceState::Starting, 2));
    let mut tx = store.begin().await.unwrap();
    assert!(
        !instances::set_state(&mut tx, web1.view.id, 1, InstanceState::Failed, Some("stale")).await.unwrap(),
        "a stale generation must lose"
    );
    assert!(!instances::set_type(&mut tx, web1.view.id, 1, f.itype.id, SMALL).await.unwrap());
    assert!(!instances::mark_destroyed(&mut tx, web1.view.id, 1).await.unwrap());
    tx.commit().await.unwrap();
    let unchanged = get_instance(store, f.project.id, web1.view.id).await.unwrap();
    assert_eq!(
        (unchanged.view.state, unchanged.view.state_reason.clone(), unchanged.generation, unchanged.view.time_modified),
        (InstanceState::Starting, None, 2, s.view.time_modified),
        "a failed compare-and-set changed the instance"
    );
    let mut tx = store.begin().await.unwrap();
    assert!(instances::set_state(&mut tx, web1.view.id, 2, InstanceState::Failed, Some("disk full")).await.unwrap());
    tx.commit().await.unwrap();
    let failed = get_instance(store, f.project.id, web1.view.id).await.unwrap();
    assert_eq!(
        (failed.view.state, failed.view.state_reason.as_deref(), failed.generation),
        (InstanceState::Failed, Some("disk full"), 3)
    );

    // Resize: a compare-and-set of the type and its resources.
    let big = Resources { vcpus: 2, memory_mib: 1024, disk_gib: 5, gpus: 0 };
    let big_type = create_type(store, "big", big).await;
    let mut tx = store.begin().await.unwrap();
    assert!(instances::set_type(&mut tx, web1.view.id, 3, big_type.id, big).await.unwrap());
    tx.commit().await.unwrap();
    let resized = get_instance(store, f.project.id, web1.view.id).await.unwrap();
    assert_eq!((resized.view.instance_type.as_str(), resized.instance_type_id), ("big", big_type.id));
    assert_eq!((resized.resources(), resized.generation, resized.view.state), (big, 4, InstanceState::Failed));
    let mut c = store.read().await.unwrap();
    assert_eq!(instance_types::count_users(&mut c, big_type.id).await.unwrap(), 1);
    assert_eq!(instance_types::count_users(&mut c, f.itype.id).await.unwrap(), 3);
    assert_eq!(images::count_users(&mut c, f.image.view.id).await.unwrap(), 4);
    assert_eq!(projects::count_children(&mut c, f.project.id).await.unwrap(), 3);
    drop(c);

    // Destroy: the row is gone from every live view and its name is free.
    let mut tx = store.begin().await.unwrap();
    assert!(instances::mark_destroyed(&mut tx, web1.view.id, 4).await.unwrap());
    tx.commit().await.unwrap();
    assert!(get_instance(store, f.project.id, web1.view.id).await.is_none());
    let mut c = store.read().await.unwrap();
    assert!(instances::get(&mut c, f.project.id, &by_name("web1")).await.unwrap().is_none());
    assert!(instances::get_by_id(&mut c, web1.view.id).await.unwrap().is_none());
    assert_eq!(instance_types::count_users(&mut c, big_type.id).await.unwrap(), 0);
    assert_eq!(images::count_users(&mut c, f.image.view.id).await.unwrap(), 3);
    let listed = instances::list(&mut c, f.project.id, &PageParams::default().validate().unwrap()).await.unwrap();
    expected_by_name.retain(|id| *id != web1.view.id);
    assert_eq!(listed.items.iter().map(|r| r.view.id).collect::<Vec<_>>(), expected_by_name);
    drop(c);
    let mut tx = store.begin().await.unwrap();
    assert!(!instances::set_state(&mut tx, web1.view.id, 5, InstanceState::Running, None).await.unwrap());
    assert!(!instances::mark_destroyed(&mut tx, web1.view.id, 5).await.unwrap(), "destroyed twice");
    tx.commit().await.unwrap();
    let reborn = create_instance(store, &f, "web1").await;
    assert_ne!(reborn.view.id, web1.view.id);
    assert_eq!(reborn.generation, 1);
}

async fn images_visibility_and_shadowing(store: &Store) {
    let a = create_project(store, "team-a").await;
    let b = create_project(store, "team-b").await;
    let public_debian = create_image(store, None, "debian").await;
    let alpine = create_image(store, None, "alpine").await;
    let a_debian = create_image(store, Some(a.id), "debian").await;
    let a_private = create_image(store, Some(a.id), "private").await;
    assert_eq!(public_debian.view.project, None);
    assert_eq!(public_debian.project_id, None);
    assert_eq!(a_debian.view.project.as_deref(), Some("team-a"));
    assert_eq!(a_debian.project_id, Some(a.id));
    assert_eq!(a_debian.disk_path, format!("/var/lib/kumo/images/{}.qcow2", a_debian.view.id));

    // Inside team-a its own debian wins over the public one; elsewhere the public one is found.
    assert_eq!(image_id(store, Some(a.id), by_name("debian")).await, Some(a_debian.view.id), "project image shadows");
    assert_eq!(image_id(store, Some(b.id), by_name("debian")).await, Some(public_debian.view.id));
    assert_eq!(image_id(store, None, by_name("debian")).await, Some(public_debian.view.id));
    // The public one stays reachable by id from team-a.
    assert_eq!(
        image_id(store, Some(a.id), NameOrId::Id(public_debian.view.id.get())).await,
        Some(public_debian.view.id)
    );
    assert_eq!(image_id(store, Some(a.id), by_name("alpine")).await, Some(alpine.view.id));
    // A project image is invisible from other projects and to public lookups, by name and by id.
    assert_eq!(image_id(store, Some(a.id), by_name("private")).await, Some(a_private.view.id));
    assert_eq!(image_id(store, Some(b.id), by_name("private")).await, None);
    assert_eq!(image_id(store, Some(b.id), NameOrId::Id(a_private.view.id.get())).await, None);
    assert_eq!(image_id(store, None, NameOrId::Id(a_private.view.id.get())).await, None);
    // get_by_id is the internal lookup: it sees everything.
    let mut c = store.read().await.unwrap();
    let rec = images::get_by_id(&mut c, a_private.view.id).await.unwrap().expect("get_by_id");
    assert_eq!(rec.project_id, Some(a.id));
    drop(c);

    let public = |n: &str| (n.to_string(), None::<String>);
    let team_a = |n: &str| (n.to_string(), Some("team-a".to_string()));
    let mut seen_a = visible_images(store, Some(a.id)).await;
    seen_a.sort();
    assert_eq!(seen_a, [public("alpine"), public("debian"), team_a("debian"), team_a("private")]);
    assert_eq!(visible_images(store, Some(b.id)).await, [public("alpine"), public("debian")]);
    assert_eq!(visible_images(store, None).await, [public("alpine"), public("debian")]);

    // count_users follows live instances created from the image.
    let f = fixture(store, "team-c").await;
    let mut c = store.read().await.unwrap();
    assert_eq!(images::count_users(&mut c, f.image.view.id).await.unwrap(), 0);
    drop(c);
    let i1 = create_instance(store, &f, "one").await;
    create_instance(store, &f, "two").await;
    let mut c = store.read().await.unwrap();
    assert_eq!(images::count_users(&mut c, f.image.view.id).await.unwrap(), 2);
    assert_eq!(images::count_users(&mut c, public_debian.view.id).await.unwrap(), 0);
    drop(c);
    let mut tx = store.begin().await.unwrap();
    assert!(instances::mark_destroyed(&mut tx, i1.view.id, i1.generation).await.unwrap());
    tx.commit().await.unwrap();
    let mut c = store.read().await.unwrap();
    assert_eq!(images::count_users(&mut c, f.image.view.id).await.unwrap(), 1);
    drop(c);

    // Deleting team-a's debian uncovers the public one again.
    let mut tx = store.begin().await.unwrap();
    assert!(images::soft_delete(&mut tx, a_debian.view.id).await.unwrap());
    tx.commit().await.unwrap();
    assert_eq!(image_id(store, Some(a.id), by_name("debian")).await, Some(public_debian.view.id));
    assert_eq!(image_id(store, Some(a.id), NameOrId::Id(a_debian.view.id.get())).await, None);
}

/// A project sees a public image and its own one under the same name: listing page by page must
/// still return each of them exactly once, whatever the page size and order.
async fn images_list_paginates_through_shadowed_names(store: &Store) {
    let a = create_project(store, "team-a").await;
    let mut all = Vec::new();
    for n in ["debian", "alpine", "ubuntu"] {
        all.push(create_image(store, None, n).await.view);
    }
    for n in ["ubuntu", "debian", "custom"] {
        all.push(create_image(store, Some(a.id), n).await.view);
    }
    for sort in SORTS {
        for limit in [1, 2, 3, 4, 6] {
            let pages = all_pages(limit, sort, |req| async move {
                let mut c = store.read().await.unwrap();
                images::list(&mut c, Some(a.id), &req).await.unwrap()
            })
            .await;
            let got: Vec<_> = pages.into_iter().flatten().collect();
            let ids: Vec<ImageId> = got.iter().map(|i| i.id).collect();
            let unique: HashSet<ImageId> = ids.iter().copied().collect();
            assert_eq!(unique.len(), ids.len(), "{sort:?}, limit {limit}: an image listed twice: {ids:?}");
            let mut want: Vec<ImageId> = all.iter().map(|i| i.id).collect();
            let mut have = ids.clone();
            want.sort();
            have.sort();
            assert_eq!(have, want, "{sort:?}, limit {limit}: every visible image exactly once");
            let keys: Vec<String> = got
                .iter()
                .map(|i| if sort == SortBy::IdAscending { i.id.to_string() } else { i.name.clone() })
                .collect();
            let ordered = keys.windows(2).all(|w| match sort {
                SortBy::NameDescending => w[0] >= w[1],
                _ => w[0] <= w[1],
            });
            assert!(ordered, "{sort:?}, limit {limit}: out of order: {keys:?}");
        }
    }
}

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

async fn tokens_insert_and_lookup(store: &Store) {
    let mut tx = store.begin().await.unwrap();
    let id = tokens::insert(&mut tx, "admin", "hash-admin", "operator").await.unwrap();
    let other = tokens::insert(&mut tx, "ci", "hash-ci", "operator").await.unwrap();
    tx.commit().await.unwrap();
    assert_ne!(id, other);

    let mut c = store.read().await.unwrap();
    let t = tokens::lookup(&mut c, "hash-admin").await.unwrap().expect("known hash");
    let want = tokens::TokenRecord {
        id,
        name: "admin".into(),
        kind: "operator".into(),
        user_id: None,
        user_name: None,
        operator: true,
    };
    assert_eq!(t, want);
    assert_eq!(tokens::lookup(&mut c, "hash-ci").await.unwrap().map(|t| t.id), Some(other));
    assert_eq!(tokens::lookup(&mut c, "hash-unknown").await.unwrap(), None);
    assert_eq!(tokens::lookup(&mut c, "").await.unwrap(), None);
    drop(c);

    let mut tx = store.begin().await.unwrap();
    assert_conflict(tokens::insert(&mut tx, "again", "hash-admin", "operator").await, "duplicate token hash");
    drop(tx);
    let mut tx = store.begin().await.unwrap();
    tokens::touch(&mut tx, id).await.unwrap();
    tx.commit().await.unwrap();
    let last_used: Option<String> = sqlx::query_scalar("SELECT time_last_used FROM api_tokens WHERE id = $1")
        .bind(id.to_string())
        .fetch_one(store.reader())
        .await
        .unwrap();
    assert!(last_used.is_some(), "touch records the last use");

    // Expired and revoked tokens no longer authenticate (set directly: no API for it yet).
    let past = kumo_store::ts(kumo_store::now() - chrono_seconds(60));
    let future = kumo_store::ts(kumo_store::now() + chrono_seconds(3600));
    let mut tx = store.begin().await.unwrap();
    sqlx::query("UPDATE api_tokens SET time_expires = $1 WHERE id = $2")
        .bind(&past)
        .bind(id.to_string())
        .execute(&mut *tx)
        .await
        .unwrap();
    sqlx::query("UPDATE api_tokens SET time_expires = $1 WHERE id = $2")
        .bind(&future)
        .bind(other.to_string())
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let mut c = store.read().await.unwrap();
    assert_eq!(tokens::lookup(&mut c, "hash-admin").await.unwrap(), None, "expired token");
    assert_eq!(tokens::lookup(&mut c, "hash-ci").await.unwrap().map(|t| t.id), Some(other), "not yet expired");
    drop(c);
    let mut tx = store.begin().await.unwrap();
    sqlx::query("UPDATE api_tokens SET time_revoked = $1 WHERE id = $2")
        .bind(kumo_store::ts(kumo_store::now()))
        .bind(other.to_string())
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let mut c = store.read().await.unwrap();
    assert_eq!(tokens::lookup(&mut c, "hash-ci").await.unwrap(), None, "revoked token");
}

fn chrono_seconds(s: i64) -> chrono::TimeDelta {
    chrono::TimeDelta::seconds(s)
}

async fn identity_users_tokens_and_audit(store: &Store) {
    use kumo_store::{audit, members, users};
    let p = create_project(store, "shop").await;
    let mut tx = store.begin().await.unwrap();
    let alice = users::create(&mut tx, "alice", "", "$argon2id$fake", false).await.unwrap();
    let root = users::create(&mut tx, "root", "ops", "$argon2id$fake", true).await.unwrap();
    tx.commit().await.unwrap();
    let mut tx = store.begin().await.unwrap();
    assert_conflict(users::create(&mut tx, "alice", "", "h", false).await, "duplicate user name");
    drop(tx);
    let mut tx = store.begin().await.unwrap();
    members::put(&mut tx, p.id, alice.id, "owner").await.unwrap();
    let ci = tokens::insert_for_user(&mut tx, alice.id, "ci", "hash-alice-ci", "user", None).await.unwrap();
    tokens::insert_for_user(&mut tx, alice.id, "session", "hash-s1", "session", None).await.unwrap();
    tokens::insert_for_user(&mut tx, alice.id, "session", "hash-s2", "session", None).await.unwrap();
    tokens::insert_for_user(&mut tx, root.id, "ci", "hash-root-ci", "user", None).await.unwrap();
    tx.commit().await.unwrap();
    assert!(!alice.operator && root.operator && root.description == "ops");

    let mut c = store.read().await.unwrap();
    let t = tokens::lookup(&mut c, "hash-alice-ci").await.unwrap().expect("alice's token");
    assert_eq!((t.id, t.user_id, t.user_name.as_deref(), t.operator), (ci, Some(alice.id), Some("alice"), false));
    assert!(tokens::lookup(&mut c, "hash-root-ci").await.unwrap().expect("root's").operator);
    let names: Vec<String> =
        tokens::list_for_user(&mut c, alice.id).await.unwrap().into_iter().map(|t| t.name).collect();
    assert_eq!(names, ["ci"], "sessions are not listed as API tokens");
    let (id, hash) = users::credentials(&mut c, "alice").await.unwrap().expect("credentials");
    assert_eq!((id, hash.as_str()), (alice.id, "$argon2id$fake"));
    let mine = users::memberships(&mut c, alice.id).await.unwrap();
    assert_eq!(mine.iter().map(|m| (m.name.as_str(), m.role.as_str())).collect::<Vec<_>>(), [("shop", "owner")]);
    let page = users::list(&mut c, &PageParams::default().validate().unwrap()).await.unwrap();
    assert_eq!(page.items.iter().map(|u| u.name.as_str()).collect::<Vec<_>>(), ["alice", "root"]);
    drop(c);

    // Token names are unique per user among live tokens; revoking frees the name.
    let mut tx = store.begin().await.unwrap();
    assert_conflict(tokens::insert_for_user(&mut tx, alice.id, "ci", "hash-x", "user", None).await, "live token name");
    drop(tx);
    let mut tx = store.begin().await.unwrap();
    assert_eq!(tokens::revoke_by_name(&mut tx, alice.id, "ci").await.unwrap(), ["hash-alice-ci"]);
    assert!(tokens::revoke_by_name(&mut tx, alice.id, "ci").await.unwrap().is_empty());
    tokens::insert_for_user(&mut tx, alice.id, "ci", "hash-alice-ci2", "user", None).await.unwrap();
    tx.commit().await.unwrap();
    let mut c = store.read().await.unwrap();
    assert_eq!(tokens::lookup(&mut c, "hash-alice-ci").await.unwrap(), None, "revoked");
    drop(c);

    // Deleting a user: all their tokens are revoked, memberships gone, the name free.
    let mut tx = store.begin().await.unwrap();
    let mut revoked = tokens::revoke_all_for_user(&mut tx, alice.id).await.unwrap();
    revoked.sort();
    assert_eq!(revoked, ["hash-alice-ci2", "hash-s1", "hash-s2"]);
    assert!(users::soft_delete(&mut tx, alice.id).await.unwrap());
    tx.commit().await.unwrap();
    let mut c = store.read().await.unwrap();
    assert_eq!(tokens::lookup(&mut c, "hash-s1").await.unwrap(), None);
    assert_eq!(users::get(&mut c, &by_name("alice")).await.unwrap().map(|u| u.id), None);
    assert_eq!(members::role(&mut c, p.id, alice.id).await.unwrap(), None);
    drop(c);

    // The audit log: filters, oldest first, pages, retention.
    let t0 = kumo_store::now();
    let mut tx = store.begin().await.unwrap();
    for (i, (user, project, op)) in [
        (Some(root.id), Some(p.id), "instance_create"),
        (None, None, "project_create"),
        (Some(root.id), None, "user_create"),
    ]
    .into_iter()
    .enumerate()
    {
        let entry = audit::NewAuditEntry {
            time: t0 + chrono_seconds(i as i64),
            request_id: format!("r{i}"),
            actor: "someone".into(),
            user_id: user,
            token_id: None,
            source_address: "127.0.0.1".into(),
            method: "POST".into(),
            path: "/v1/x".into(),
            operation: op.into(),
            project_id: project,
            status: 201,
            result: "ok".into(),
        };
        audit::record(&mut tx, &entry).await.unwrap();
    }
    tx.commit().await.unwrap();
    let all = PageParams::default().validate().unwrap();
    let mut c = store.read().await.unwrap();
    let ids = |page: ResultsPage<kumo_types::AuditEntryView>| {
        page.items.into_iter().map(|e| e.request_id).collect::<Vec<_>>()
    };
    assert_eq!(ids(audit::list(&mut c, &audit::AuditFilter::default(), &all).await.unwrap()), ["r0", "r1", "r2"]);
    let by_user = audit::AuditFilter { user_id: Some(root.id), ..Default::default() };
    assert_eq!(ids(audit::list(&mut c, &by_user, &all).await.unwrap()), ["r0", "r2"]);
    let by_project = audit::AuditFilter { project_id: Some(p.id), ..Default::default() };
    assert_eq!(ids(audit::list(&mut c, &by_project, &all).await.unwrap()), ["r0"]);
    let by_op = audit::AuditFilter { operation: Some("project_create".into()), ..Default::default() };
    assert_eq!(ids(audit::list(&mut c, &by_op, &all).await.unwrap()), ["r1"]);
    let window = audit::AuditFilter {
        since: Some(t0 + chrono_seconds(1)),
        until: Some(t0 + chrono_seconds(2)),
        ..Default::default()
    };
    assert_eq!(ids(audit::list(&mut c, &window, &all).await.unwrap()), ["r1"]);
    let pages = all_pages(2, SortBy::NameAscending, |req| {
        let store = store.clone();
        async move {
            let mut c = store.read().await.unwrap();
            audit::list(&mut c, &audit::AuditFilter::default(), &req).await.unwrap()
        }
    })
    .await;
    let ids_by_page: Vec<Vec<String>> =
        pages.into_iter().map(|p| p.into_iter().map(|e| e.request_id).collect()).collect();
    assert_eq!(ids_by_page, [vec!["r0", "r1"], vec!["r2"]]);
    drop(c);
    let mut tx = store.begin().await.unwrap();
    assert_eq!(audit::prune(&mut tx, t0 + chrono_seconds(2)).await.unwrap(), 2);
    tx.commit().await.unwrap();
    let mut c = store.read().await.unwrap();
    assert_eq!(ids(audit::list(&mut c, &audit::AuditFilter::default(), &all).await.unwrap()), ["r2"]);
}

// ---------------------------------------------------------------------------------------------
// Quotas and billing
// ---------------------------------------------------------------------------------------------

async fn quotas_charge_conditionally_and_never_overshoot(store: &Store) {
    use kumo_store::quotas::{self, QuotaAmounts, QuotaLimits};
    let p = create_project(store, "shop").await;
    let one = QuotaAmounts { instances: 1, vcpus: 2, memory_mib: 512, storage_gib: 5, ..Default::default() };
    // Unlimited until limits are set, but for the counts with finite defaults; no row needed.
    let q = quotas::get(&mut store.read().await.unwrap(), p.id).await.unwrap().expect("project");
    let defaults = QuotaLimits {
        vpcs: Some(quotas::DEFAULT_VPCS),
        images: Some(quotas::DEFAULT_IMAGES),
        snapshots: Some(quotas::DEFAULT_SNAPSHOTS),
        backups: Some(quotas::DEFAULT_BACKUPS),
        ..Default::default()
    };
    assert_eq!((q.limits, q.used), (defaults, QuotaAmounts::default()));
    // The same defaults once the row exists (the columns' defaults), and the counts charge.
    let mut tx = store.begin().await.unwrap();
    let vpc = QuotaAmounts { vpcs: 1, ..Default::default() };
    for _ in 0..quotas::DEFAULT_VPCS {
        assert!(quotas::charge(&mut tx, p.id, vpc).await.unwrap());
    }
    assert!(!quotas::charge(&mut tx, p.id, vpc).await.unwrap(), "11 VPCs > 10");
    let q = quotas::get(&mut tx, p.id).await.unwrap().expect("project");
    assert_eq!((q.limits, q.used.vpcs), (defaults, 10));
    quotas::release(&mut tx, p.id, QuotaAmounts { vpcs: 10, ..Default::default() }).await.unwrap();
    tx.commit().await.unwrap();
    let mut tx = store.begin().await.unwrap();
    assert!(quotas::charge(&mut tx, p.id, one).await.unwrap());
    quotas::set_limits(&mut tx, p.id, &QuotaLimits { vcpus: Some(5), ..Default::default() }).await.unwrap();
    assert!(quotas::charge(&mut tx, p.id, one).await.unwrap());
    assert!(!quotas::charge(&mut tx, p.id, one).await.unwrap(), "6 vCPUs > 5");
    // A shrinking delta always passes, even over a limit lowered below use.
    quotas::set_limits(&mut tx, p.id, &QuotaLimits { vcpus: Some(1), ..Default::default() }).await.unwrap();
    let shrink = QuotaAmounts { vcpus: -1, ..Default::default() };
    assert!(quotas::charge(&mut tx, p.id, shrink).await.unwrap());
    quotas::release(&mut tx, p.id, one).await.unwrap();
    tx.commit().await.unwrap();
    let q = quotas::get(&mut store.read().await.unwrap(), p.id).await.unwrap().expect("project");
    assert_eq!(q.used, QuotaAmounts { instances: 1, vcpus: 1, memory_mib: 512, storage_gib: 5, ..Default::default() });
    assert_eq!(q.limits.vcpus, Some(1));

    // Concurrent charges in separate transactions never overshoot.
    let mut tx = store.begin().await.unwrap();
    quotas::set_limits(&mut tx, p.id, &QuotaLimits { instances: Some(6), ..Default::default() }).await.unwrap();
    tx.commit().await.unwrap();
    let unit = QuotaAmounts { instances: 1, ..Default::default() };
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut tx = store.begin().await.unwrap();
                let ok = quotas::charge(&mut tx, p.id, unit).await.unwrap();
                tx.commit().await.unwrap();
                ok
            })
        })
        .collect();
    let mut granted = 0;
    for t in tasks {
        granted += t.await.unwrap() as i64;
    }
    assert_eq!(granted, 5);
    let all = quotas::all(&mut store.read().await.unwrap()).await.unwrap();
    assert_eq!(all.iter().find(|q| q.project_id == p.id).map(|q| q.used.instances), Some(6));
}

async fn billing_prices_invoices_budgets_and_metering_events(store: &Store) {
    use kumo_store::billing::{self, InvoiceRecord, LineRecord};
    let p = create_project(store, "shop").await;
    let t0 = chrono::DateTime::parse_from_rfc3339("2026-10-01T00:00:00Z").unwrap().with_timezone(&chrono::Utc);
    let mut tx = store.begin().await.unwrap();
    billing::add_price(&mut tx, "instance_type", "k1-small", 12_000, t0).await.unwrap();
    billing::add_price(&mut tx, "instance_type", "k1-small", 15_000, t0 + chrono_seconds(3600)).await.unwrap();
    billing::add_price(&mut tx, "disk", "", 100_000, t0).await.unwrap();
    let r = Uuid::now_v7();
    for (i, state) in ["creating", "running", "stopped"].iter().enumerate() {
        let e = NewEvent {
            project_id: Some(p.id),
            resource_type: "instance",
            resource_id: r,
            resource_name: "web",
            kind: "state_changed",
            from_state: None,
            to_state: Some(*state),
            cause: "test",
            detail: Some(r#"{"instance_type":"k1-small","vcpus":1,"memory_mib":512,"disk_gib":5}"#.into()),
        };
        events::record_at(&mut tx, &e, t0 + chrono_seconds(10 * i as i64)).await.unwrap();
    }
    tx.commit().await.unwrap();
    let mut conn = store.read().await.unwrap();
    let prices = billing::prices(&mut conn).await.unwrap();
    assert_eq!(
        prices.iter().map(|p| (p.kind.as_str(), p.unit_price_micros)).collect::<Vec<_>>(),
        [("disk", 100_000), ("instance_type", 12_000), ("instance_type", 15_000)]
    );
    let rows = events::for_metering(&mut conn, p.id, "instance", t0 + chrono_seconds(15)).await.unwrap();
    assert_eq!(
        rows.iter().map(|r| r.to_state).collect::<Vec<_>>(),
        [Some(EventState::Instance(InstanceState::Creating)), Some(EventState::Instance(InstanceState::Running))]
    );
    assert!(rows[0].detail.as_deref().is_some_and(|d| d.contains("k1-small")));
    // A state the instance state machine does not have is corrupt data, not a string to bill by.
    let q = create_project(store, "odd-states").await;
    let mut tx = store.begin().await.unwrap();
    let odd = NewEvent {
        project_id: Some(q.id),
        resource_type: "instance",
        resource_id: Uuid::now_v7(),
        resource_name: "odd",
        kind: "state_changed",
        from_state: None,
        to_state: Some("hibernating"),
        cause: "test",
        detail: None,
    };
    events::record_at(&mut tx, &odd, t0).await.unwrap();
    tx.commit().await.unwrap();
    let err = events::for_metering(&mut conn, q.id, "instance", t0 + chrono_seconds(15)).await.unwrap_err();
    assert!(matches!(&err, StoreError::Corrupt(m) if m.contains("hibernating")), "{err:?}");
    assert_eq!(events::earliest_time(&mut conn, p.id).await.unwrap().map(|t| t <= t0), Some(true));
    drop(conn);

    let inv = InvoiceRecord {
        id: InvoiceId::new_v7(),
        period: "2026-10".into(),
        period_start: t0,
        period_end: t0 + chrono_seconds(31 * 86400),
        total_cents: 7,
        time_created: t0 + chrono_seconds(31 * 86400 + 5),
        lines: vec![LineRecord {
            resource_type: "instance".into(),
            resource_id: r,
            resource_name: "web".into(),
            price_kind: "instance_type".into(),
            price_name: "k1-small".into(),
            quantity: 10,
            unit: "second".into(),
            unit_price_micros: 12_000,
            price_unit: "hour".into(),
            cost_cents: 7,
            intervals: "[]".into(),
        }],
    };
    let mut tx = store.begin().await.unwrap();
    assert_eq!(billing::insert_invoice(&mut tx, p.id, &inv).await.unwrap(), inv);
    // A second generation returns the stored one, unchanged.
    let other = InvoiceRecord { id: InvoiceId::new_v7(), total_cents: 999, lines: vec![], ..inv.clone() };
    assert_eq!(billing::insert_invoice(&mut tx, p.id, &other).await.unwrap(), inv);
    billing::set_budget(&mut tx, p.id, 5000, 80).await.unwrap();
    billing::set_budget(&mut tx, p.id, 6000, 90).await.unwrap();
    assert!(billing::mark_alerted(&mut tx, p.id, "2026-10").await.unwrap());
    assert!(!billing::mark_alerted(&mut tx, p.id, "2026-10").await.unwrap(), "one alert per month");
    assert!(billing::mark_alerted(&mut tx, p.id, "2026-11").await.unwrap());
    tx.commit().await.unwrap();
    let mut conn = store.read().await.unwrap();
    assert_eq!(billing::invoice(&mut conn, p.id, "2026-10").await.unwrap(), Some(inv.clone()));
    assert_eq!(billing::invoice(&mut conn, p.id, "2026-09").await.unwrap(), None);
    let b = billing::budget(&mut conn, p.id).await.unwrap().expect("budget");
    assert_eq!((b.monthly_cents, b.alert_at_percent, b.last_alert_period.as_deref()), (6000, 90, Some("2026-11")));
    assert_eq!(billing::budgets(&mut conn).await.unwrap().len(), 1);
    drop(conn);

    // Two writers close the same month at once (a request and the billing task): the second waits
    // for the first and keeps its invoice instead of failing on the unique index.
    let nov = InvoiceRecord { id: InvoiceId::new_v7(), period: "2026-11".into(), ..inv.clone() };
    let rival = InvoiceRecord { id: InvoiceId::new_v7(), total_cents: 1, lines: vec![], ..nov.clone() };
    let mut first = store.begin().await.unwrap();
    assert_eq!(billing::insert_invoice(&mut first, p.id, &nov).await.unwrap(), nov);
    let commit_later = async {
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        first.commit().await.unwrap();
    };
    let second = async {
        let mut tx = store.begin().await.unwrap();
        let kept = billing::insert_invoice(&mut tx, p.id, &rival).await.unwrap();
        tx.commit().await.unwrap();
        kept
    };
    let ((), kept) = tokio::join!(commit_later, second);
    assert_eq!(kept, nov);
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

async fn volumes_snapshots_and_backups(store: &Store) {
    use kumo_store::volumes::{self, NewVolume, SourceKind};
    use kumo_store::{backups, snapshots};
    use kumo_types::VolumeState;
    let f = fixture(store, "vols").await;
    let inst = create_instance(store, &f, "vm1").await;
    let new = |id: VolumeId, n: &'static str, source_id: Option<Uuid>| NewVolume {
        id,
        project_id: f.project.id,
        name: n,
        description: "",
        size_gib: 10,
        encrypted: n == "secret",
        source_kind: if source_id.is_some() { SourceKind::Image } else { SourceKind::Empty },
        source_id,
        source_name: source_id.map(|_| "img"),
        iops_limit: Some(100),
        bandwidth_limit_mib_s: None,
    };
    let (a, b) = (VolumeId::new_v7(), VolumeId::new_v7());
    let mut tx = store.begin().await.unwrap();
    volumes::insert(&mut tx, &new(a, "data", None)).await.unwrap();
    volumes::insert(&mut tx, &new(b, "secret", Some(f.image.view.id.get()))).await.unwrap();
    tx.commit().await.unwrap();
    // (In its own transaction: on PostgreSQL a failed statement aborts the transaction.)
    let mut tx = store.begin().await.unwrap();
    assert_conflict(volumes::insert(&mut tx, &new(VolumeId::new_v7(), "data", None)).await, "duplicate volume name");
    drop(tx);

    let mut conn = store.read().await.unwrap();
    let v = volumes::get(&mut conn, f.project.id, &by_name("secret")).await.unwrap().expect("secret");
    assert_eq!((v.state(), v.view.encrypted, v.view.source.as_str()), (VolumeState::Creating, true, "image:img"));
    assert_eq!((v.view.iops_limit, v.view.bandwidth_limit_mib_s), (Some(100), None));
    assert_eq!(images::count_users(&mut conn, f.image.view.id).await.unwrap(), 1 + 1, "the instance and the volume");
    let page = volumes::list(
        &mut conn,
        f.project.id,
        &PageParams { limit: None, page_token: None, sort_by: None }.validate().unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(page.items.iter().map(|v| v.view.name.as_str()).collect::<Vec<_>>(), ["data", "secret"]);
    drop(conn);

    // Compare-and-set: a stale generation loses.
    let mut tx = store.begin().await.unwrap();
    let v = volumes::get_by_id(&mut tx, a).await.unwrap().unwrap();
    assert!(volumes::set_state(&mut tx, a, v.generation, VolumeState::Attaching, Some(inst.view.id), None)
        .await
        .unwrap());
    assert!(!volumes::set_state(&mut tx, a, v.generation, VolumeState::Available, None, None).await.unwrap());
    tx.commit().await.unwrap();
    let mut conn = store.read().await.unwrap();
    let held = volumes::of_instance(&mut conn, inst.view.id).await.unwrap();
    assert_eq!(held.len(), 1);
    assert_eq!(held[0].view.attached_to.as_deref(), Some("vm1"));
    drop(conn);

    let (s1, b1) = (SnapshotId::new_v7(), BackupId::new_v7());
    let mut tx = store.begin().await.unwrap();
    let snap = snapshots::NewSnapshot {
        id: s1,
        project_id: f.project.id,
        name: "s1",
        description: "",
        volume_id: a,
        volume_name: "data",
        size_gib: 10,
    };
    snapshots::insert(&mut tx, &snap).await.unwrap();
    let backup = backups::NewBackup {
        id: b1,
        project_id: f.project.id,
        name: "b1",
        description: "",
        volume_id: a,
        volume_name: "data",
        size_gib: 10,
        encrypted: false,
        kind: "full",
        chunks: 3,
        bytes_stored: 3 << 20,
    };
    backups::insert(&mut tx, &backup).await.unwrap();
    assert!(backups::volume_has_any(&mut tx, a).await.unwrap());
    assert!(!backups::volume_has_any(&mut tx, b).await.unwrap());
    assert_eq!(snapshots::live_ids(&mut tx).await.unwrap(), vec![s1]);
    assert!(snapshots::soft_delete(&mut tx, s1).await.unwrap());
    assert!(snapshots::live_ids(&mut tx).await.unwrap().is_empty());
    let v = volumes::get_by_id(&mut tx, b).await.unwrap().unwrap();
    assert!(volumes::mark_deleted(&mut tx, b, v.generation).await.unwrap());
    tx.commit().await.unwrap();
    let mut conn = store.read().await.unwrap();
    assert!(volumes::get_by_id(&mut conn, b).await.unwrap().is_none());
    let got = backups::get(&mut conn, f.project.id, &by_name("b1")).await.unwrap().expect("b1");
    assert_eq!((got.view.kind.as_str(), got.view.bytes_stored, got.view.volume.as_str()), ("full", 3 << 20, "data"));
}

async fn network_ipam_concurrent_and_queries(store: &Store) {
    use kumo_store::{floating_ips, nics, security_groups, ssh_keys, vpcs};
    use kumo_types::network::{RuleDirection, RuleProtocol};
    let f = fixture(store, "netp").await;
    let mut tx = store.begin().await.unwrap();
    let vpc = vpcs::insert_vpc(&mut tx, f.project.id, "app", "", "10.10.0.0/16").await.unwrap();
    let other = vpcs::insert_vpc(&mut tx, f.project.id, "other", "", "10.10.0.0/16").await.unwrap();
    assert_eq!(other.view.vni, vpc.view.vni + 1, "the lowest free VNI");
    let subnet = vpcs::insert_subnet(&mut tx, &vpc, "web", "", "10.10.1.0/27").await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(subnet.plan.capacity(), 29);

    // 12 concurrent creates (instance + interface in one transaction): distinct addresses.
    const TASKS: usize = 12;
    let overlap = match store.backend() {
        Backend::Sqlite => 1,
        Backend::Postgres => TASKS.min(store.reader().options().get_max_connections() as usize),
    };
    let barrier = Arc::new(tokio::sync::Barrier::new(overlap));
    let arrived = Arc::new(AtomicUsize::new(0));
    let mut handles = Vec::new();
    for i in 0..TASKS {
        let (store, subnet) = (store.clone(), subnet.clone());
        let (barrier, arrived) = (barrier.clone(), arrived.clone());
        let (image, itype, host, project) = (f.image.view.id, f.itype.id, f.host.id, f.project.id);
        handles.push(tokio::spawn(async move {
            let id = InstanceId::new_v7();
            let mut tx = store.begin().await.unwrap();
            if arrived.fetch_add(1, Ordering::SeqCst) < overlap {
                sqlx::query("SELECT 1").execute(&mut *tx).await.unwrap();
                barrier.wait().await;
            }
            let new = NewInstance {
                id,
                project_id: project,
                name: &format!("vm{i}"),
                description: "",
                image_id: image,
                instance_type_id: itype,
                host_id: host,
                resources: Resources { vcpus: 0, memory_mib: 0, disk_gib: 0, gpus: 0 },
                user_data: None,
            };
            instances::insert(&mut tx, &new).await.unwrap();
            let nic = match nics::allocate(&mut tx, id, &subnet).await {
                Ok(n) => n,
                Err(e) => panic!("allocate: {e:?}"),
            };
            tx.commit().await.unwrap();
            (id, nic.ipv4)
        }));
    }
    let mut seen = HashSet::new();
    let mut ids = Vec::new();
    for h in handles {
        let (id, ip) = h.await.unwrap();
        let addr: std::net::Ipv4Addr = ip.parse().unwrap();
        assert!(subnet.plan.assignable(addr), "{ip} is reserved or outside the subnet");
        assert!(seen.insert(ip.clone()), "duplicate address {ip}");
        ids.push(id);
    }
    let on_host = nics::on_host(&mut store.read().await.unwrap(), f.host.id).await.unwrap();
    assert_eq!(on_host.len(), TASKS);
    assert!(on_host.iter().all(|n| n.vni == vpc.view.vni && n.subnet_cidr == "10.10.1.0/27"));

    // Release makes the address free again; views show interfaces and the public IP.
    let mut tx = store.begin().await.unwrap();
    nics::release_for_instance(&mut tx, ids[0]).await.unwrap();
    let fip = floating_ips::insert(&mut tx, f.project.id, "ip1", "", "203.0.113.2").await.unwrap();
    floating_ips::set_instance(&mut tx, fip.view.id, Some(ids[1])).await.unwrap();
    assert_eq!(floating_ips::used_ips(&mut tx).await.unwrap(), vec!["203.0.113.2".to_string()]);
    tx.commit().await.unwrap();
    let rec = instances::get_by_id(&mut store.read().await.unwrap(), ids[1]).await.unwrap().unwrap();
    assert_eq!(rec.view.network_interfaces.len(), 1);
    assert_eq!(rec.view.public_ip.as_deref(), Some("203.0.113.2"));
    assert_eq!(vpcs::count_vpc_interfaces(&mut store.read().await.unwrap(), vpc.view.id).await.unwrap(), 11);

    // Security groups: rules replaced as a whole, members, references.
    let mut tx = store.begin().await.unwrap();
    let web = security_groups::insert(&mut tx, f.project.id, "web", "").await.unwrap();
    let db = security_groups::insert(&mut tx, f.project.id, "db", "").await.unwrap();
    let rule = |ports, cidr: Option<&str>, group: Option<(SecurityGroupId, String)>| security_groups::StoredRule {
        direction: RuleDirection::Ingress,
        protocol: RuleProtocol::Tcp,
        ports,
        source_cidr: cidr.map(String::from),
        source_group: group,
    };
    security_groups::replace_rules(
        &mut tx,
        db.view.id,
        &[rule(Some((5432, 5432)), None, Some((web.view.id, "web".into())))],
    )
    .await
    .unwrap();
    security_groups::replace_rules(&mut tx, web.view.id, &[rule(Some((80, 80)), Some("0.0.0.0/0"), None)])
        .await
        .unwrap();
    security_groups::replace_rules(&mut tx, web.view.id, &[rule(Some((8000, 8080)), Some("10.0.0.0/8"), None)])
        .await
        .unwrap();
    security_groups::set_instance_groups(&mut tx, ids[1], &[web.view.id]).await.unwrap();
    ssh_keys::insert(&mut tx, f.project.id, "k", "", "ssh-ed25519 AAAA x").await.unwrap();
    nics::set_instance_ssh_keys(&mut tx, ids[1], &["ssh-ed25519 AAAA x".to_string()]).await.unwrap();
    tx.commit().await.unwrap();
    let mut conn = store.read().await.unwrap();
    let web_rules = security_groups::rules(&mut conn, Some(web.view.id)).await.unwrap();
    assert_eq!(web_rules.len(), 1, "a replace leaves only the new rules");
    assert_eq!(web_rules[0].1.to_wire().port_range.as_deref(), Some("8000-8080"));
    let db_rules = security_groups::rules(&mut conn, Some(db.view.id)).await.unwrap();
    assert_eq!(db_rules[0].1.to_wire().source, "web");
    assert_eq!(security_groups::referenced_by(&mut conn, web.view.id).await.unwrap(), vec!["db".to_string()]);
    assert_eq!(security_groups::count_members(&mut conn, web.view.id).await.unwrap(), 1);
    assert_eq!(security_groups::memberships(&mut conn).await.unwrap(), vec![(ids[1], web.view.id)]);
    assert_eq!(nics::instance_ssh_keys(&mut conn, ids[1]).await.unwrap(), vec!["ssh-ed25519 AAAA x".to_string()]);
    assert_eq!(vpcs::all_subnets(&mut conn, None).await.unwrap().len(), 1);
    assert_eq!(vpcs::all_vpcs(&mut conn).await.unwrap().len(), 2);
    drop(conn);

    // Many rules (several multi-row INSERTs) come back complete and in order.
    let many: Vec<_> = (0..250u16).map(|i| rule(Some((1000 + i, 1000 + i)), Some("10.0.0.0/8"), None)).collect();
    let mut tx = store.begin().await.unwrap();
    security_groups::replace_rules(&mut tx, web.view.id, &many).await.unwrap();
    tx.commit().await.unwrap();
    let back = security_groups::rules(&mut store.read().await.unwrap(), Some(web.view.id)).await.unwrap();
    assert_eq!(back.into_iter().map(|(_, r)| r).collect::<Vec<_>>(), many);
}

/// Issue 10, item 1/2: a host row is keyed by the id its data directory keeps (a new name renames
/// it, never makes a second host; a name another host has is refused), a data directory from
/// before host ids adopts its row, and the cloud id is written once.
async fn hosts_keyed_by_their_id_and_the_cloud_id(store: &Store) {
    let total = Resources { vcpus: 4, memory_mib: 4096, disk_gib: 100, gpus: 0 };
    let mut tx = store.begin().await.unwrap();
    assert_eq!(kumo_store::cloud::hosts_ever(&mut tx).await.unwrap(), 0);
    assert_eq!(hosts::adoptable(&mut tx, "alpha").await.unwrap(), None);
    let old = hosts::upsert(&mut tx, &report("alpha", total, 1.0, 1.0, 1.0)).await.unwrap();
    // The only host is adopted whatever its name (a renamed single machine).
    assert_eq!(hosts::adoptable(&mut tx, "renamed").await.unwrap(), Some(old.id));
    assert!(hosts::reserve(&mut tx, old.id, Resources { vcpus: 1, ..Default::default() }).await.unwrap());
    let renamed = hosts::register(&mut tx, old.id, &report("beta", total, 1.0, 1.0, 1.0)).await.unwrap();
    assert_eq!((renamed.id, renamed.name.as_str(), renamed.vcpus_used), (old.id, "beta", 1));
    let other = hosts::register(&mut tx, HostId::new_v7(), &report("gamma", total, 1.0, 1.0, 1.0)).await.unwrap();
    assert_ne!(other.id, old.id);
    assert_eq!(hosts::adoptable(&mut tx, "gamma").await.unwrap(), Some(other.id));
    assert_eq!(hosts::adoptable(&mut tx, "nobody").await.unwrap(), None, "two hosts: no guess");
    match hosts::register(&mut tx, other.id, &report("beta", total, 1.0, 1.0, 1.0)).await {
        Err(StoreError::Conflict(m)) => assert!(m.contains("beta"), "{m}"),
        r => panic!("a taken name must be refused: {r:?}"),
    }
    assert_eq!(kumo_store::cloud::hosts_ever(&mut tx).await.unwrap(), 2);
    assert_eq!(kumo_store::cloud::id(&mut tx).await.unwrap(), None);
    let cloud = Uuid::now_v7();
    kumo_store::cloud::set_id(&mut tx, cloud).await.unwrap();
    assert_eq!(kumo_store::cloud::id(&mut tx).await.unwrap(), Some(cloud));
    tx.commit().await.unwrap();
}

/// VNIs and conntrack zones: the lowest free among live VPCs (reused after a delete), distinct
/// under concurrent creates, and a clear error when all 65535 zones are live.
async fn vpc_zones_and_vnis_are_reused_distinct_and_bounded(store: &Store) {
    use kumo_store::vpcs::{self, VpcInsertError, MAX_CT_ZONE};
    let f = fixture(store, "zones").await;
    let insert = |n: String| {
        let store = store.clone();
        async move {
            let mut tx = store.begin().await.unwrap();
            let v = vpcs::insert_vpc(&mut tx, f.project.id, &n, "", "10.0.0.0/16").await;
            tx.commit().await.unwrap();
            v
        }
    };
    let mut made = Vec::new();
    for i in 1..=5 {
        let v = insert(format!("v{i}")).await.unwrap();
        assert_eq!((v.view.vni, v.ct_zone), (i, i), "lowest free in an empty space");
        made.push(v);
    }
    let mut tx = store.begin().await.unwrap();
    assert!(vpcs::delete_vpc(&mut tx, made[1].view.id).await.unwrap());
    assert!(vpcs::delete_vpc(&mut tx, made[3].view.id).await.unwrap());
    tx.commit().await.unwrap();
    let zones: Vec<(i64, i64)> = {
        let mut z = Vec::new();
        for n in ["r1", "r2", "r3"] {
            let v = insert(n.into()).await.unwrap();
            z.push((v.view.vni, v.ct_zone));
        }
        z
    };
    assert_eq!(zones, [(2, 2), (4, 4), (6, 6)], "deleted VPCs' VNIs and zones are reused, lowest first");

    // Concurrent creates (overlapping transactions on PostgreSQL) get distinct values.
    const TASKS: usize = 12;
    let overlap = match store.backend() {
        Backend::Sqlite => 1,
        Backend::Postgres => TASKS.min(store.reader().options().get_max_connections() as usize),
    };
    let barrier = Arc::new(tokio::sync::Barrier::new(overlap));
    let arrived = Arc::new(AtomicUsize::new(0));
    let mut handles = Vec::new();
    for i in 0..TASKS {
        let (store, barrier, arrived, project) = (store.clone(), barrier.clone(), arrived.clone(), f.project.id);
        handles.push(tokio::spawn(async move {
            let mut tx = store.begin().await.unwrap();
            if arrived.fetch_add(1, Ordering::SeqCst) < overlap {
                sqlx::query("SELECT 1").execute(&mut *tx).await.unwrap();
                barrier.wait().await;
            }
            let v = vpcs::insert_vpc(&mut tx, project, &format!("c{i}"), "", "10.0.0.0/16")
                .await
                .unwrap_or_else(|e| panic!("concurrent create {i}: {e:?}"));
            tx.commit().await.unwrap();
            (v.view.vni, v.ct_zone)
        }));
    }
    let mut got = HashSet::new();
    for h in handles {
        assert!(got.insert(h.await.unwrap()), "duplicate VNI or zone");
    }
    let expect: HashSet<(i64, i64)> = (7..7 + TASKS as i64).map(|i| (i, i)).collect();
    assert_eq!(got, expect, "the next lowest values, each once");

    // Fill every remaining zone (rows straight in, with VNIs far above), then one more is refused.
    let mut tx = store.begin().await.unwrap();
    sqlx::query(
        "WITH RECURSIVE n(i) AS (SELECT CAST(1 AS BIGINT) UNION ALL SELECT i + 1 FROM n WHERE i < $1) \
         INSERT INTO vpcs (id, project_id, name, description, time_created, time_modified, ipv4_cidr, vni, ct_zone) \
         SELECT 'fill-' || CAST(i AS TEXT), $2, 'fill-' || CAST(i AS TEXT), '', '2026-01-01T00:00:00.000000Z', \
           '2026-01-01T00:00:00.000000Z', '10.0.0.0/16', i + 1000000, i FROM n \
         WHERE NOT EXISTS (SELECT 1 FROM vpcs v WHERE v.time_deleted IS NULL AND v.ct_zone = n.i)",
    )
    .bind(MAX_CT_ZONE)
    .bind(f.project.id.to_string())
    .execute(&mut *tx)
    .await
    .unwrap();
    tx.commit().await.unwrap();
    match insert("full".into()).await {
        Err(VpcInsertError::Exhausted(what)) => assert_eq!(what, "conntrack zone"),
        other => panic!("expected exhaustion, got {other:?}"),
    }
    // One freed zone is the next one given.
    let mut tx = store.begin().await.unwrap();
    sqlx::query("UPDATE vpcs SET time_deleted = '2026-01-02T00:00:00.000000Z' WHERE id = 'fill-777'")
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let v = insert("again".into()).await.unwrap();
    assert_eq!(v.ct_zone, 777);
    assert!(v.ct_zone <= MAX_CT_ZONE && v.view.vni <= vpcs::MAX_VNI);
}
