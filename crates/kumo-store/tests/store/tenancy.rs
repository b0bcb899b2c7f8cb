//! Store tests: projects, names unique among live rows, and the migrations themselves.
//!
//! Each case runs on SQLite and on PostgreSQL: see `common.rs`.

use crate::common::*;
use kumo_store::images::{self, NewImage};
use kumo_store::{instance_types, projects, Store};
use kumo_types::page::{PageParams, SortBy};
use kumo_types::{ImageBoot, ImageFacts, InstanceTypeCreate, NameOrId, ProjectId};
use uuid::Uuid;

store_tests!(migrations_apply_twice, projects_get_and_paginate, names_unique_among_live_rows);

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
        host_labels: Default::default(),
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
