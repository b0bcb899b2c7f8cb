//! Store tests: hosts (capacity reservations, ids) and instance types.
//!
//! Each case runs on SQLite and on PostgreSQL: see `common.rs`.

use crate::common::*;
use kumo_store::events::{self, NewEvent};
use kumo_store::hosts::{self, Resources};
use kumo_store::{instance_types, Backend, Store, StoreError};
use kumo_types::page::PageParams;
use kumo_types::HostId;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use uuid::Uuid;

store_tests!(
    instance_types_seed_defaults_idempotent,
    hosts_upsert_reserve_release,
    hosts_concurrent_reservations_never_overshoot,
    hosts_keyed_by_their_id_and_the_cloud_id,
);

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
