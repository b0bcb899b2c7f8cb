//! Store tests: instances.
//!
//! Each case runs on SQLite and on PostgreSQL: see `common.rs`.

use crate::common::*;
use kumo_store::hosts::Resources;
use kumo_store::images;
use kumo_store::instances;
use kumo_store::{instance_types, projects, Store};
use kumo_types::page::{PageParams, SortBy};
use kumo_types::{InstanceId, InstanceState, NameOrId};

store_tests!(instances_lifecycle);

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
