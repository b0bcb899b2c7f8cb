//! The harness of the store test suite, run on both databases, and the helpers its cases share.
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
//! The cases live in one module per resource or area beside this file (`instances.rs`,
//! `networking.rs`, …), all in one test binary (`main.rs`: one link instead of one per file):
//!
//!     KUMO_TEST_POSTGRES_URL=$(scripts/postgres.sh) cargo test -p kumo-store
//!     cargo test -p kumo-store --test store instances::

use kumo_store::hosts::{self, HostReport, Resources};
use kumo_store::images::{self, NewImage};
use kumo_store::instances::{self, InstanceRecord, NewInstance};
use kumo_store::{instance_types, projects, Backend, Store, StoreError};
use kumo_types::page::{PageParams, PageRequest, SortBy};
use kumo_types::{
    HostId, HostView, ImageBoot, ImageFacts, ImageId, InstanceId, InstanceTypeCreate, InstanceTypeView, Name, NameOrId,
    ProjectId, ProjectView, ResultsPage,
};
use sqlx::{Connection, Executor};
use std::future::Future;
use uuid::Uuid;

// ---------------------------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------------------------

/// A store on a fresh database, and what it takes to throw that database away.
pub struct TestDb {
    pub store: Store,
    pub url: String,
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
    pub async fn sqlite() -> TestDb {
        let dir = tempfile::tempdir().expect("create a temporary directory");
        let url = format!("sqlite://{}", dir.path().join("kumo.db").display());
        let store = Store::open(&url).await.unwrap_or_else(|e| panic!("open {url}: {e}"));
        let db = TestDb { store, url, cleanup: Cleanup::Sqlite(dir) };
        assert_eq!(db.backend(), Backend::Sqlite);
        db
    }

    /// A fresh PostgreSQL database, or `None` (after saying why) when none is configured locally.
    pub async fn postgres() -> Option<TestDb> {
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
    pub async fn finish(mut self) {
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
                let db = crate::common::TestDb::sqlite().await;
                super::$case(&db).await;
                db.finish().await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                let Some(db) = crate::common::TestDb::postgres().await else { return };
                super::$case(&db).await;
                db.finish().await;
            }
        }
    )*};
}

pub(crate) use store_tests;

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

pub fn name(s: &str) -> Name {
    Name::parse(s).unwrap_or_else(|e| panic!("{e}"))
}

pub fn by_name(s: &str) -> NameOrId {
    NameOrId::Name(name(s))
}

pub const SORTS: [SortBy; 3] = [SortBy::NameAscending, SortBy::NameDescending, SortBy::IdAscending];

/// Follows `next_page` from the first page to the last, checking the page shapes on the way:
/// every page but the last is full and has a token, the last one has none. Returns the pages.
pub async fn all_pages<T, F, Fut>(limit: u32, sort_by: SortBy, mut fetch: F) -> Vec<Vec<T>>
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

pub async fn create_project(store: &Store, n: &str) -> ProjectView {
    let mut tx = store.begin().await.unwrap();
    let p = projects::create(&mut tx, n, &format!("project {n}")).await.unwrap();
    tx.commit().await.unwrap();
    p
}

pub async fn create_type(store: &Store, n: &str, r: Resources) -> InstanceTypeView {
    let params = InstanceTypeCreate {
        name: name(n),
        description: format!("type {n}"),
        vcpus: r.vcpus,
        memory_mib: r.memory_mib,
        disk_gib: r.disk_gib,
        gpus: r.gpus,
        host_labels: Default::default(),
    };
    let mut tx = store.begin().await.unwrap();
    let t = instance_types::create(&mut tx, &params).await.unwrap();
    tx.commit().await.unwrap();
    t
}

pub fn report(n: &str, total: Resources, cpu_oc: f64, mem_oc: f64, disk_oc: f64) -> HostReport {
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

pub async fn upsert_host(store: &Store, r: &HostReport) -> HostView {
    let mut tx = store.begin().await.unwrap();
    let h = hosts::upsert(&mut tx, r).await.unwrap();
    tx.commit().await.unwrap();
    h
}

pub async fn get_host(store: &Store, id: HostId) -> HostView {
    let mut c = store.read().await.unwrap();
    hosts::get(&mut c, &NameOrId::Id(id.get())).await.unwrap().expect("host exists")
}

pub fn used(h: &HostView) -> Resources {
    Resources { vcpus: h.vcpus_used, memory_mib: h.memory_mib_used, disk_gib: h.disk_gib_used, gpus: h.gpus_used }
}

pub async fn create_image(store: &Store, project_id: Option<ProjectId>, n: &str) -> images::ImageRecord {
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
pub struct Fixture {
    pub project: ProjectView,
    pub image: images::ImageRecord,
    pub itype: InstanceTypeView,
    pub host: HostView,
}

pub const SMALL: Resources = Resources { vcpus: 1, memory_mib: 512, disk_gib: 5, gpus: 0 };

pub async fn fixture(store: &Store, project: &str) -> Fixture {
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
pub async fn try_create_instance(
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
            placement_group_id: None,
        },
    )
    .await?;
    tx.commit().await?;
    Ok(id)
}

pub async fn create_instance(store: &Store, f: &Fixture, n: &str) -> InstanceRecord {
    let id = try_create_instance(store, f, f.project.id, n).await.unwrap();
    get_instance(store, f.project.id, id).await.expect("instance just inserted")
}

pub async fn get_instance(store: &Store, project_id: ProjectId, id: InstanceId) -> Option<InstanceRecord> {
    let mut c = store.read().await.unwrap();
    instances::get(&mut c, project_id, &NameOrId::Id(id.get())).await.unwrap()
}

/// The id of the image `sel` finds from `project_id`.
pub async fn image_id(store: &Store, project_id: Option<ProjectId>, sel: NameOrId) -> Option<ImageId> {
    let mut c = store.read().await.unwrap();
    images::get(&mut c, project_id, &sel).await.unwrap().map(|r| r.view.id)
}

/// (name, project) of every image listed from `project_id`, in one page.
pub async fn visible_images(store: &Store, project_id: Option<ProjectId>) -> Vec<(String, Option<String>)> {
    let mut c = store.read().await.unwrap();
    let page = images::list(&mut c, project_id, &PageParams::default().validate().unwrap()).await.unwrap();
    assert!(page.next_page.is_none());
    page.items.into_iter().map(|i| (i.name, i.project)).collect()
}

pub fn assert_conflict<T: std::fmt::Debug>(r: Result<T, StoreError>, what: &str) {
    match r {
        Err(StoreError::Conflict(_)) => {}
        other => panic!("{what}: expected StoreError::Conflict, got {other:?}"),
    }
}

pub fn chrono_seconds(s: i64) -> chrono::TimeDelta {
    chrono::TimeDelta::seconds(s)
}
