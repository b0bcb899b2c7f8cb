//! Store tests: moves of instances between hosts (cold migration) and host drains (issue 13).
//!
//! Each case runs on SQLite and on PostgreSQL: see `common.rs`.

use crate::common::*;
use kumo_store::migrations::{self, NewMigration, Phase};
use kumo_store::{hosts, instances, Store};
use kumo_types::{DrainState, InstanceState};

store_tests!(a_move_is_one_open_row_driven_by_compare_and_set, a_drain_starts_once_and_ends);

async fn a_move_is_one_open_row_driven_by_compare_and_set(store: &Store) {
    let f = fixture(store, "mig").await;
    let other = upsert_host(store, &report("mig-b", SMALL, 1.0, 1.0, 1.0)).await;
    let rec = create_instance(store, &f, "vm").await;
    let new = NewMigration {
        instance_id: rec.view.id,
        source_host_id: f.host.id,
        target_host_id: Some(other.id),
        phase: Phase::Exporting,
        was_running: true,
        drain: false,
        reason: None,
    };
    let mut tx = store.begin().await.unwrap();
    let id = migrations::insert(&mut tx, &new).await.unwrap();
    tx.commit().await.unwrap();
    // (A failed statement ends a PostgreSQL transaction: the refused insert gets its own.)
    let mut tx = store.begin().await.unwrap();
    assert_conflict(migrations::insert(&mut tx, &new).await, "a second open move of one instance");
    drop(tx);

    let mut tx = store.begin().await.unwrap();
    assert!(
        !migrations::set_phase(&mut tx, id, Phase::Copying, Phase::Cleaning, None).await.unwrap(),
        "not copying yet"
    );
    assert!(migrations::exported(&mut tx, id, 262_144, "ab12").await.unwrap());
    assert!(!migrations::exported(&mut tx, id, 1, "x").await.unwrap(), "exported once");
    let m = migrations::open_for_instance(&mut tx, rec.view.id).await.unwrap().expect("open");
    assert_eq!(
        (m.phase, m.disk.clone(), m.was_running, m.target_host_id),
        (Phase::Copying, Some((262_144, "ab12".into())), true, Some(other.id))
    );
    // The commit: the instance takes the target host, the move starts cleaning.
    assert!(instances::move_to(&mut tx, rec.view.id, rec.generation, other.id, InstanceState::Starting, None)
        .await
        .unwrap());
    assert!(
        !instances::move_to(&mut tx, rec.view.id, rec.generation, f.host.id, InstanceState::Stopped, None)
            .await
            .unwrap(),
        "a stale generation"
    );
    assert!(migrations::set_phase(&mut tx, id, Phase::Copying, Phase::Cleaning, None).await.unwrap());
    tx.commit().await.unwrap();
    let moved = get_instance(store, f.project.id, rec.view.id).await.unwrap();
    assert_eq!((moved.host_id, moved.state()), (other.id, InstanceState::Starting));

    let mut tx = store.begin().await.unwrap();
    assert!(migrations::set_phase(&mut tx, id, Phase::Cleaning, Phase::Done, None).await.unwrap());
    assert!(migrations::open(&mut tx).await.unwrap().is_empty(), "done closes the move");
    let since = m.time_created - chrono_seconds(1);
    let off = migrations::from_host_since(&mut tx, f.host.id, since).await.unwrap();
    assert_eq!(off.iter().map(|m| m.phase).collect::<Vec<_>>(), [Phase::Done]);
    // A closed move leaves room for the next one; a refused one is closed at once, with its reason.
    let refused = NewMigration { phase: Phase::Refused, target_host_id: None, reason: Some("no host"), ..new };
    migrations::insert(&mut tx, &refused).await.unwrap();
    assert!(migrations::open(&mut tx).await.unwrap().is_empty());
    let off = migrations::from_host_since(&mut tx, f.host.id, since).await.unwrap();
    assert_eq!(off.last().map(|m| (m.phase, m.reason.as_deref())), Some((Phase::Refused, Some("no host"))));
    tx.commit().await.unwrap();
}

async fn a_drain_starts_once_and_ends(store: &Store) {
    let f = fixture(store, "drn").await;
    let mut tx = store.begin().await.unwrap();
    assert!(hosts::start_drain(&mut tx, f.host.id).await.unwrap());
    assert!(!hosts::start_drain(&mut tx, f.host.id).await.unwrap(), "already draining");
    tx.commit().await.unwrap();
    let h = get_host(store, f.host.id).await;
    assert!(h.cordoned, "a drain cordons");
    assert_eq!(h.drain.as_ref().map(|d| (d.state, d.time_finished)), Some((DrainState::Draining, None)));
    let mut tx = store.begin().await.unwrap();
    assert_eq!(hosts::draining(&mut tx).await.unwrap().iter().map(|h| h.id).collect::<Vec<_>>(), [f.host.id]);
    assert!(hosts::finish_drain(&mut tx, f.host.id, DrainState::Incomplete, Some("vm: failed")).await.unwrap());
    assert!(!hosts::finish_drain(&mut tx, f.host.id, DrainState::Done, None).await.unwrap(), "ended once");
    assert!(hosts::draining(&mut tx).await.unwrap().is_empty());
    tx.commit().await.unwrap();
    let d = get_host(store, f.host.id).await.drain.expect("drain kept");
    assert_eq!(
        (d.state, d.reason.as_deref(), d.time_finished.is_some()),
        (DrainState::Incomplete, Some("vm: failed"), true)
    );
    // Again after it ended; uncordon forgets it.
    let mut tx = store.begin().await.unwrap();
    assert!(hosts::start_drain(&mut tx, f.host.id).await.unwrap());
    hosts::clear_drain(&mut tx, f.host.id).await.unwrap();
    tx.commit().await.unwrap();
    assert!(get_host(store, f.host.id).await.drain.is_none());
}
