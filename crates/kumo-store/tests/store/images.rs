//! Store tests: images: visibility, shadowing of public images by a project's own, pagination.
//!
//! Each case runs on SQLite and on PostgreSQL: see `common.rs`.

use crate::common::*;
use kumo_store::images;
use kumo_store::instances;
use kumo_store::Store;
use kumo_types::page::SortBy;
use kumo_types::{ImageId, NameOrId};
use std::collections::HashSet;

store_tests!(images_visibility_and_shadowing, images_list_paginates_through_shadowed_names);

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
