//! Store tests: networking: IPAM, VPCs (VNIs, conntrack zones).
//!
//! Each case runs on SQLite and on PostgreSQL: see `common.rs`.

use crate::common::*;
use kumo_store::hosts::Resources;
use kumo_store::instances::{self, NewInstance};
use kumo_store::{Backend, Store};
use kumo_types::{InstanceId, SecurityGroupId};
use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

store_tests!(network_ipam_concurrent_and_queries, vpc_zones_and_vnis_are_reused_distinct_and_bounded);

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
                placement_group_id: None,
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
