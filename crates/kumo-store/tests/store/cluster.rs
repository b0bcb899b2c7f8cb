//! Store tests: zones, join tokens, and hosts that join over the network (issue 13).
//!
//! Each case runs on SQLite and on PostgreSQL: see `common.rs`.

use crate::common::*;
use kumo_store::hosts::{self, JoinedHost, Resources};
use kumo_store::join_tokens::{self, Consumed};
use kumo_store::{now, zones, Store};
use kumo_types::page::PageParams;
use kumo_types::{HostId, HostRole, HostState, NameOrId, ZoneId};

store_tests!(
    zones_create_list_sum_their_hosts,
    join_tokens_work_once_before_they_expire,
    hosts_join_heartbeat_and_cordon,
);

async fn zones_create_list_sum_their_hosts(store: &Store) {
    let mut tx = store.begin().await.unwrap();
    let east = zones::create(&mut tx, "east", "the east room").await.unwrap();
    assert_eq!((east.name.as_str(), east.description.as_str(), east.hosts), ("east", "the east room", Some(0)));
    assert_eq!((east.vcpus_limit, east.memory_mib_used), (Some(0), Some(0)));
    tx.commit().await.unwrap();
    // A conflict aborts the transaction on PostgreSQL: its own one.
    let mut tx = store.begin().await.unwrap();
    assert_conflict(zones::create(&mut tx, "east", "again").await, "a taken zone name");
    drop(tx);
    let mut tx = store.begin().await.unwrap();
    // ensure: the existing one by name, or a new one.
    assert_eq!(zones::ensure(&mut tx, "east").await.unwrap(), east.id);
    let west = zones::ensure(&mut tx, "west").await.unwrap();
    assert_ne!(west, east.id);
    tx.commit().await.unwrap();

    // A registered host lands in `default` (created on the way) and counts there.
    let total = Resources { vcpus: 4, memory_mib: 4096, disk_gib: 100, gpus: 0 };
    let h = upsert_host(store, &report("node1", total, 2.0, 1.0, 1.0)).await;
    assert_eq!(h.zone, "default");
    // A host moved to east counts there, not in default.
    let h2 = upsert_host(store, &report("node2", total, 1.0, 1.0, 1.0)).await;
    let mut tx = store.begin().await.unwrap();
    assert!(hosts::reserve(&mut tx, h.id, Resources { vcpus: 1, memory_mib: 512, disk_gib: 10, gpus: 0 })
        .await
        .unwrap());
    hosts::set_zone(&mut tx, h2.id, east.id).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(get_host(store, h2.id).await.zone, "east");

    let mut c = store.read().await.unwrap();
    let d = zones::get(&mut c, &by_name("default")).await.unwrap().expect("default zone");
    assert_eq!((d.hosts, d.vcpus_limit, d.vcpus_used), (Some(1), Some(8), Some(1)));
    assert_eq!(
        (d.memory_mib_limit, d.memory_mib_used, d.disk_gib_limit, d.disk_gib_used),
        (Some(4096), Some(512), Some(100), Some(10))
    );
    let e = zones::get(&mut c, &NameOrId::Id(east.id.get())).await.unwrap().expect("east by id");
    assert_eq!((e.hosts, e.vcpus_limit, e.vcpus_used), (Some(1), Some(4), Some(0)));
    assert!(zones::get(&mut c, &by_name("north")).await.unwrap().is_none());
    let page = zones::list(&mut c, &PageParams::default().validate().unwrap()).await.unwrap();
    let names: Vec<&str> = page.items.iter().map(|z| z.name.as_str()).collect();
    assert_eq!(names, ["default", "east", "west"]);
    let pages = all_pages(2, kumo_types::SortBy::NameDescending, |req| {
        let store = store.clone();
        async move { zones::list(&mut store.read().await.unwrap(), &req).await.unwrap() }
    })
    .await;
    let names: Vec<String> = pages.into_iter().flatten().map(|z| z.name).collect();
    assert_eq!(names, ["west", "east", "default"]);
}

async fn join_tokens_work_once_before_they_expire(store: &Store) {
    let mut tx = store.begin().await.unwrap();
    let zone = zones::create(&mut tx, "east", "").await.unwrap().id;
    let later = now() + chrono_seconds(3600);
    join_tokens::create(&mut tx, zone, "hash-a", later).await.unwrap();
    join_tokens::create(&mut tx, zone, "hash-old", now() - chrono_seconds(1)).await.unwrap();
    tx.commit().await.unwrap();
    let mut tx = store.begin().await.unwrap();
    assert_conflict(join_tokens::create(&mut tx, zone, "hash-a", later).await, "a duplicate token hash");
    drop(tx);

    let (h1, h2): (HostId, HostId) = (HostId::new_v7(), HostId::new_v7());
    let mut tx = store.begin().await.unwrap();
    assert_eq!(join_tokens::consume(&mut tx, "hash-a", h1).await.unwrap(), Consumed::Zone(zone));
    assert_eq!(join_tokens::consume(&mut tx, "hash-a", h2).await.unwrap(), Consumed::AlreadyUsed);
    assert_eq!(join_tokens::consume(&mut tx, "hash-old", h2).await.unwrap(), Consumed::Expired);
    assert_eq!(join_tokens::consume(&mut tx, "hash-nope", h2).await.unwrap(), Consumed::Unknown);
    tx.commit().await.unwrap();

    // Concurrent joins with one token: exactly one gets the zone.
    let mut tx = store.begin().await.unwrap();
    join_tokens::create(&mut tx, zone, "hash-race", later).await.unwrap();
    tx.commit().await.unwrap();
    let tasks: Vec<_> = (0..6)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut tx = store.begin().await.unwrap();
                let r = join_tokens::consume(&mut tx, "hash-race", HostId::new_v7()).await.unwrap();
                tx.commit().await.unwrap();
                r
            })
        })
        .collect();
    let mut results = Vec::new();
    for t in tasks {
        results.push(t.await.unwrap());
    }
    assert_eq!(results.iter().filter(|r| **r == Consumed::Zone(zone)).count(), 1, "{results:?}");
    assert!(results.iter().all(|r| matches!(r, Consumed::Zone(_) | Consumed::AlreadyUsed)), "{results:?}");
}

async fn hosts_join_heartbeat_and_cordon(store: &Store) {
    let total = Resources { vcpus: 8, memory_mib: 8192, disk_gib: 200, gpus: 0 };
    let local = upsert_host(store, &report("local", total, 1.0, 1.0, 1.0)).await;
    assert_eq!(
        (local.role, local.state, local.cordoned, local.last_seen),
        (HostRole::Local, HostState::Ready, false, None)
    );
    assert_eq!(local.address, None);

    let mut tx = store.begin().await.unwrap();
    let zone: ZoneId = zones::create(&mut tx, "east", "").await.unwrap().id;
    let r = report("agent1", total, 2.0, 1.0, 1.0);
    let id = HostId::new_v7();
    let joined = JoinedHost {
        id,
        report: &r,
        zone,
        address: "https://10.77.0.2:7401",
        fingerprint: "AB:CD",
        agent_secret: "secret-to-agent",
        credential_hash: "cred-hash-1",
    };
    let h = hosts::join(&mut tx, &joined).await.unwrap();
    assert_eq!((h.id, h.name.as_str(), h.zone.as_str(), h.role), (id, "agent1", "east", HostRole::Agent));
    assert_eq!((h.state, h.address.as_deref(), h.vcpus_limit), (HostState::Ready, Some("https://10.77.0.2:7401"), 16));
    let first_seen = h.last_seen.expect("a joined host was seen");
    tx.commit().await.unwrap();
    // A taken name, or a taken credential, is a conflict (each in its own transaction: a
    // conflict aborts it on PostgreSQL).
    let r_local = report("local", total, 1.0, 1.0, 1.0);
    let clash = JoinedHost { id: HostId::new_v7(), report: &r_local, credential_hash: "cred-hash-2", ..joined };
    let mut tx = store.begin().await.unwrap();
    assert_conflict(hosts::join(&mut tx, &clash).await, "a taken host name");
    drop(tx);
    let r2 = report("agent2", total, 1.0, 1.0, 1.0);
    let same_cred = JoinedHost { id: HostId::new_v7(), report: &r2, ..joined };
    let mut tx = store.begin().await.unwrap();
    assert_conflict(hosts::join(&mut tx, &same_cred).await, "a taken credential");
    drop(tx);

    let mut c = store.read().await.unwrap();
    assert_eq!(hosts::by_credential(&mut c, "cred-hash-1").await.unwrap(), Some(id));
    assert_eq!(hosts::by_credential(&mut c, "cred-hash-x").await.unwrap(), None);
    let eps = hosts::agent_endpoints(&mut c).await.unwrap();
    assert_eq!(eps.len(), 1, "the local host is no agent: {eps:?}");
    assert_eq!(
        (eps[0].id, eps[0].name.as_str(), eps[0].address.as_str(), eps[0].fingerprint.as_str(), eps[0].secret.as_str()),
        (id, "agent1", "https://10.77.0.2:7401", "AB:CD", "secret-to-agent")
    );
    drop(c);

    // A heartbeat refreshes capacity (keeping reservations), address, fingerprint and last_seen.
    let mut tx = store.begin().await.unwrap();
    let part = Resources { vcpus: 2, memory_mib: 1024, disk_gib: 10, gpus: 0 };
    assert!(hosts::reserve(&mut tx, id, part).await.unwrap());
    tx.commit().await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let bigger = report("agent1", Resources { vcpus: 12, ..total }, 2.0, 1.0, 1.0);
    let mut tx = store.begin().await.unwrap();
    hosts::heartbeat(&mut tx, id, &bigger, "https://10.77.0.9:7401", "EF:01").await.unwrap();
    tx.commit().await.unwrap();
    let mut tx = store.begin().await.unwrap();
    assert_conflict(hosts::heartbeat(&mut tx, HostId::new_v7(), &bigger, "x", "y").await, "an unknown host");
    drop(tx);
    let h = get_host(store, id).await;
    assert_eq!((h.vcpus_total, h.vcpus_limit, used(&h)), (12, 24, part));
    assert_eq!(h.address.as_deref(), Some("https://10.77.0.9:7401"));
    assert!(h.last_seen.expect("seen") > first_seen);
    let mut c = store.read().await.unwrap();
    assert_eq!(hosts::agent_endpoints(&mut c).await.unwrap()[0].fingerprint, "EF:01");
    drop(c);

    // Leases renewed together: the live hosts of the batch are renewed and returned, an unknown
    // id is not; nothing else of the host changes.
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let mut tx = store.begin().await.unwrap();
    let stranger = HostId::new_v7();
    assert_eq!(hosts::renew(&mut tx, &[stranger, id]).await.unwrap(), vec![id]);
    assert_eq!(hosts::renew(&mut tx, &[]).await.unwrap(), Vec::<HostId>::new());
    tx.commit().await.unwrap();
    let renewed = get_host(store, id).await;
    assert!(renewed.last_seen > h.last_seen, "{:?} after {:?}", renewed.last_seen, h.last_seen);
    assert_eq!((renewed.vcpus_total, renewed.address), (12, h.address.clone()));

    // The roomiest hosts that can take a request: best first (as the scheduler ranks), of a zone
    // when asked, none that cannot take it.
    let small = Resources { vcpus: 1, memory_mib: 128, disk_gib: 1, gpus: 0 };
    let mut c = store.read().await.unwrap();
    let free = |h: &kumo_types::HostView| (h.memory_mib_limit - h.memory_mib_used, h.vcpus_limit - h.vcpus_used);
    let any = hosts::roomiest(&mut c, None, small, 10).await.unwrap();
    assert_eq!(any.len(), 2, "{any:?}");
    assert!(free(&any[0]) >= free(&any[1]), "{any:?}");
    let east = hosts::roomiest(&mut c, Some("east"), small, 10).await.unwrap();
    assert_eq!(east.iter().map(|h| h.id).collect::<Vec<_>>(), vec![id]);
    assert_eq!(hosts::roomiest(&mut c, None, small, 1).await.unwrap().len(), 1);
    let huge = Resources { vcpus: 1000, ..small };
    assert!(hosts::roomiest(&mut c, None, huge, 10).await.unwrap().is_empty());
    drop(c);

    // Cordon and uncordon.
    let mut tx = store.begin().await.unwrap();
    hosts::set_cordoned(&mut tx, id, true).await.unwrap();
    tx.commit().await.unwrap();
    let mut c = store.read().await.unwrap();
    assert!(hosts::roomiest(&mut c, Some("east"), small, 10).await.unwrap().is_empty(), "a cordoned host");
    drop(c);
    let h = get_host(store, id).await;
    assert_eq!((h.cordoned, h.state), (true, HostState::Cordoned));
    let mut c = store.read().await.unwrap();
    let all = hosts::all(&mut c).await.unwrap();
    let states: Vec<(&str, &str, HostState)> =
        all.iter().map(|h| (h.name.as_str(), h.zone.as_str(), h.state)).collect();
    assert_eq!(states, [("agent1", "east", HostState::Cordoned), ("local", "default", HostState::Ready)]);
    drop(c);
    let mut tx = store.begin().await.unwrap();
    hosts::set_cordoned(&mut tx, id, false).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(get_host(store, id).await.state, HostState::Ready);

    // Re-registering the local host keeps its zone; a zone's hosts are counted live only.
    let moved = upsert_host(store, &report("local", total, 1.0, 1.0, 1.0)).await;
    assert_eq!(moved.zone, "default");
}
