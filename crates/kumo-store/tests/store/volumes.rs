//! Store tests: volumes, snapshots and backups.
//!
//! Each case runs on SQLite and on PostgreSQL: see `common.rs`.

use crate::common::*;
use kumo_store::images;
use kumo_store::Store;
use kumo_types::page::PageParams;
use kumo_types::{BackupId, SnapshotId, VolumeId};
use uuid::Uuid;

store_tests!(volumes_snapshots_and_backups);

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
