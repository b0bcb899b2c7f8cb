//! Store tests: placement groups, and where their members are (issue 13).
//!
//! Each case runs on SQLite and on PostgreSQL: see `common.rs`.

use crate::common::*;
use kumo_store::instances::{self, NewInstance};
use kumo_store::{hosts, placement_groups, Store};
use kumo_types::page::PageParams;
use kumo_types::{InstanceId, NameOrId, PlacementGroupId, PlacementPolicy};

store_tests!(placement_groups_life_cycle_and_members);

/// Inserts an instance of group `group` on the fixture host, as the control plane does.
async fn create_member(store: &Store, f: &Fixture, n: &str, group: Option<PlacementGroupId>) -> InstanceId {
    let id = InstanceId::new_v7();
    let mut tx = store.begin().await.unwrap();
    assert!(hosts::reserve(&mut tx, f.host.id, SMALL).await.unwrap(), "fixture host is full");
    let new = NewInstance {
        id,
        project_id: f.project.id,
        name: n,
        description: "",
        image_id: f.image.view.id,
        instance_type_id: f.itype.id,
        host_id: f.host.id,
        resources: SMALL,
        user_data: None,
        placement_group_id: group,
    };
    instances::insert(&mut tx, &new).await.unwrap();
    tx.commit().await.unwrap();
    id
}

async fn placement_groups_life_cycle_and_members(store: &Store) {
    let f = fixture(store, "pgp").await;
    let other = create_project(store, "pgp-other").await;
    let mut tx = store.begin().await.unwrap();
    let web = placement_groups::insert(&mut tx, f.project.id, "web", "front ends", PlacementPolicy::AntiAffinity)
        .await
        .unwrap();
    assert_eq!(
        (web.name.as_str(), web.description.as_str(), web.project.as_str(), web.policy, web.instances),
        ("web", "front ends", "pgp", PlacementPolicy::AntiAffinity, 0)
    );
    let db = placement_groups::insert(&mut tx, f.project.id, "db", "", PlacementPolicy::Pack).await.unwrap();
    // The same name in another project is another group.
    placement_groups::insert(&mut tx, other.id, "web", "", PlacementPolicy::Spread).await.unwrap();
    tx.commit().await.unwrap();
    let mut tx = store.begin().await.unwrap();
    assert_conflict(
        placement_groups::insert(&mut tx, f.project.id, "web", "", PlacementPolicy::Spread).await,
        "a taken placement group name",
    );
    drop(tx);

    let mut c = store.read().await.unwrap();
    let by_id = placement_groups::get(&mut c, f.project.id, &NameOrId::Id(web.id.get())).await.unwrap();
    assert_eq!(by_id.map(|g| g.name), Some("web".to_string()));
    assert!(placement_groups::get(&mut c, other.id, &NameOrId::Id(web.id.get())).await.unwrap().is_none());
    let page = placement_groups::list(&mut c, f.project.id, &PageParams::default().validate().unwrap()).await.unwrap();
    let names: Vec<&str> = page.items.iter().map(|g| g.name.as_str()).collect();
    assert_eq!(names, ["db", "web"]);
    assert_eq!(placement_groups::count(&mut c, f.project.id).await.unwrap(), 2);
    drop(c);

    // Members: the instance view names its group; counts per host and the group's count follow.
    let a = create_member(store, &f, "a", Some(web.id)).await;
    create_member(store, &f, "b", Some(web.id)).await;
    create_member(store, &f, "c", None).await;
    let rec = get_instance(store, f.project.id, a).await.unwrap();
    assert_eq!((rec.view.placement_group.as_deref(), rec.placement_group_id), (Some("web"), Some(web.id)));
    let mut c = store.read().await.unwrap();
    let plain = instances::get(&mut c, f.project.id, &by_name("c")).await.unwrap().unwrap();
    assert_eq!((plain.view.placement_group, plain.placement_group_id), (None, None));
    assert_eq!(placement_groups::members(&mut c, web.id).await.unwrap(), ["a", "b"]);
    assert_eq!(placement_groups::members_per_host(&mut c, web.id).await.unwrap(), [(f.host.id, 2)]);
    assert!(placement_groups::members_per_host(&mut c, db.id).await.unwrap().is_empty());
    let g = placement_groups::get(&mut c, f.project.id, &by_name("web")).await.unwrap().unwrap();
    assert_eq!(g.instances, 2);
    drop(c);

    // A destroyed instance is no longer a member.
    let mut tx = store.begin().await.unwrap();
    assert!(instances::mark_destroyed(&mut tx, rec.view.id, rec.generation).await.unwrap());
    tx.commit().await.unwrap();
    let mut c = store.read().await.unwrap();
    assert_eq!(placement_groups::members(&mut c, web.id).await.unwrap(), ["b"]);
    assert_eq!(placement_groups::members_per_host(&mut c, web.id).await.unwrap(), [(f.host.id, 1)]);
    drop(c);

    // Deleted: gone from get, list and count; the name is free again.
    let mut tx = store.begin().await.unwrap();
    assert!(placement_groups::soft_delete(&mut tx, db.id).await.unwrap());
    assert!(!placement_groups::soft_delete(&mut tx, db.id).await.unwrap(), "deleted once");
    assert!(!placement_groups::lock(&mut tx, db.id).await.unwrap(), "a deleted group is not taken");
    assert!(placement_groups::lock(&mut tx, web.id).await.unwrap());
    assert!(placement_groups::get(&mut tx, f.project.id, &by_name("db")).await.unwrap().is_none());
    assert_eq!(placement_groups::count(&mut tx, f.project.id).await.unwrap(), 1);
    let again = placement_groups::insert(&mut tx, f.project.id, "db", "", PlacementPolicy::Affinity).await.unwrap();
    assert_ne!(again.id, db.id);
    tx.commit().await.unwrap();
}
