//! Store tests: users, API tokens, project members and the audit log.
//!
//! Each case runs on SQLite and on PostgreSQL: see `common.rs`.

use crate::common::*;
use kumo_store::{tokens, Store};
use kumo_types::page::{PageParams, SortBy};
use kumo_types::ResultsPage;

store_tests!(tokens_insert_and_lookup, identity_users_tokens_and_audit);

async fn tokens_insert_and_lookup(store: &Store) {
    let mut tx = store.begin().await.unwrap();
    let id = tokens::insert(&mut tx, "admin", "hash-admin", "operator").await.unwrap();
    let other = tokens::insert(&mut tx, "ci", "hash-ci", "operator").await.unwrap();
    tx.commit().await.unwrap();
    assert_ne!(id, other);

    let mut c = store.read().await.unwrap();
    let t = tokens::lookup(&mut c, "hash-admin").await.unwrap().expect("known hash");
    let want = tokens::TokenRecord {
        id,
        name: "admin".into(),
        kind: "operator".into(),
        user_id: None,
        user_name: None,
        operator: true,
    };
    assert_eq!(t, want);
    assert_eq!(tokens::lookup(&mut c, "hash-ci").await.unwrap().map(|t| t.id), Some(other));
    assert_eq!(tokens::lookup(&mut c, "hash-unknown").await.unwrap(), None);
    assert_eq!(tokens::lookup(&mut c, "").await.unwrap(), None);
    drop(c);

    let mut tx = store.begin().await.unwrap();
    assert_conflict(tokens::insert(&mut tx, "again", "hash-admin", "operator").await, "duplicate token hash");
    drop(tx);
    let mut tx = store.begin().await.unwrap();
    tokens::touch(&mut tx, id).await.unwrap();
    tx.commit().await.unwrap();
    let last_used: Option<String> = sqlx::query_scalar("SELECT time_last_used FROM api_tokens WHERE id = $1")
        .bind(id.to_string())
        .fetch_one(store.reader())
        .await
        .unwrap();
    assert!(last_used.is_some(), "touch records the last use");

    // Expired and revoked tokens no longer authenticate (set directly: no API for it yet).
    let past = kumo_store::ts(kumo_store::now() - chrono_seconds(60));
    let future = kumo_store::ts(kumo_store::now() + chrono_seconds(3600));
    let mut tx = store.begin().await.unwrap();
    sqlx::query("UPDATE api_tokens SET time_expires = $1 WHERE id = $2")
        .bind(&past)
        .bind(id.to_string())
        .execute(&mut *tx)
        .await
        .unwrap();
    sqlx::query("UPDATE api_tokens SET time_expires = $1 WHERE id = $2")
        .bind(&future)
        .bind(other.to_string())
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let mut c = store.read().await.unwrap();
    assert_eq!(tokens::lookup(&mut c, "hash-admin").await.unwrap(), None, "expired token");
    assert_eq!(tokens::lookup(&mut c, "hash-ci").await.unwrap().map(|t| t.id), Some(other), "not yet expired");
    drop(c);
    let mut tx = store.begin().await.unwrap();
    sqlx::query("UPDATE api_tokens SET time_revoked = $1 WHERE id = $2")
        .bind(kumo_store::ts(kumo_store::now()))
        .bind(other.to_string())
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let mut c = store.read().await.unwrap();
    assert_eq!(tokens::lookup(&mut c, "hash-ci").await.unwrap(), None, "revoked token");
}

async fn identity_users_tokens_and_audit(store: &Store) {
    use kumo_store::{audit, members, users};
    let p = create_project(store, "shop").await;
    let mut tx = store.begin().await.unwrap();
    let alice = users::create(&mut tx, "alice", "", "$argon2id$fake", false).await.unwrap();
    let root = users::create(&mut tx, "root", "ops", "$argon2id$fake", true).await.unwrap();
    tx.commit().await.unwrap();
    let mut tx = store.begin().await.unwrap();
    assert_conflict(users::create(&mut tx, "alice", "", "h", false).await, "duplicate user name");
    drop(tx);
    let mut tx = store.begin().await.unwrap();
    members::put(&mut tx, p.id, alice.id, "owner").await.unwrap();
    let ci = tokens::insert_for_user(&mut tx, alice.id, "ci", "hash-alice-ci", "user", None).await.unwrap();
    tokens::insert_for_user(&mut tx, alice.id, "session", "hash-s1", "session", None).await.unwrap();
    tokens::insert_for_user(&mut tx, alice.id, "session", "hash-s2", "session", None).await.unwrap();
    tokens::insert_for_user(&mut tx, root.id, "ci", "hash-root-ci", "user", None).await.unwrap();
    tx.commit().await.unwrap();
    assert!(!alice.operator && root.operator && root.description == "ops");

    let mut c = store.read().await.unwrap();
    let t = tokens::lookup(&mut c, "hash-alice-ci").await.unwrap().expect("alice's token");
    assert_eq!((t.id, t.user_id, t.user_name.as_deref(), t.operator), (ci, Some(alice.id), Some("alice"), false));
    assert!(tokens::lookup(&mut c, "hash-root-ci").await.unwrap().expect("root's").operator);
    let names: Vec<String> =
        tokens::list_for_user(&mut c, alice.id).await.unwrap().into_iter().map(|t| t.name).collect();
    assert_eq!(names, ["ci"], "sessions are not listed as API tokens");
    let (id, hash) = users::credentials(&mut c, "alice").await.unwrap().expect("credentials");
    assert_eq!((id, hash.as_str()), (alice.id, "$argon2id$fake"));
    let mine = users::memberships(&mut c, alice.id).await.unwrap();
    assert_eq!(mine.iter().map(|m| (m.name.as_str(), m.role.as_str())).collect::<Vec<_>>(), [("shop", "owner")]);
    let page = users::list(&mut c, &PageParams::default().validate().unwrap()).await.unwrap();
    assert_eq!(page.items.iter().map(|u| u.name.as_str()).collect::<Vec<_>>(), ["alice", "root"]);
    drop(c);

    // Token names are unique per user among live tokens; revoking frees the name.
    let mut tx = store.begin().await.unwrap();
    assert_conflict(tokens::insert_for_user(&mut tx, alice.id, "ci", "hash-x", "user", None).await, "live token name");
    drop(tx);
    let mut tx = store.begin().await.unwrap();
    assert_eq!(tokens::revoke_by_name(&mut tx, alice.id, "ci").await.unwrap(), ["hash-alice-ci"]);
    assert!(tokens::revoke_by_name(&mut tx, alice.id, "ci").await.unwrap().is_empty());
    tokens::insert_for_user(&mut tx, alice.id, "ci", "hash-alice-ci2", "user", None).await.unwrap();
    tx.commit().await.unwrap();
    let mut c = store.read().await.unwrap();
    assert_eq!(tokens::lookup(&mut c, "hash-alice-ci").await.unwrap(), None, "revoked");
    drop(c);

    // Deleting a user: all their tokens are revoked, memberships gone, the name free.
    let mut tx = store.begin().await.unwrap();
    let mut revoked = tokens::revoke_all_for_user(&mut tx, alice.id).await.unwrap();
    revoked.sort();
    assert_eq!(revoked, ["hash-alice-ci2", "hash-s1", "hash-s2"]);
    assert!(users::soft_delete(&mut tx, alice.id).await.unwrap());
    tx.commit().await.unwrap();
    let mut c = store.read().await.unwrap();
    assert_eq!(tokens::lookup(&mut c, "hash-s1").await.unwrap(), None);
    assert_eq!(users::get(&mut c, &by_name("alice")).await.unwrap().map(|u| u.id), None);
    assert_eq!(members::role(&mut c, p.id, alice.id).await.unwrap(), None);
    drop(c);

    // The audit log: filters, oldest first, pages, retention.
    let t0 = kumo_store::now();
    let mut tx = store.begin().await.unwrap();
    for (i, (user, project, op)) in [
        (Some(root.id), Some(p.id), "instance_create"),
        (None, None, "project_create"),
        (Some(root.id), None, "user_create"),
    ]
    .into_iter()
    .enumerate()
    {
        let entry = audit::NewAuditEntry {
            time: t0 + chrono_seconds(i as i64),
            request_id: format!("r{i}"),
            actor: "someone".into(),
            user_id: user,
            token_id: None,
            source_address: "127.0.0.1".into(),
            method: "POST".into(),
            path: "/v1/x".into(),
            operation: op.into(),
            project_id: project,
            status: 201,
            result: "ok".into(),
        };
        audit::record(&mut tx, &entry).await.unwrap();
    }
    tx.commit().await.unwrap();
    let all = PageParams::default().validate().unwrap();
    let mut c = store.read().await.unwrap();
    let ids = |page: ResultsPage<kumo_types::AuditEntryView>| {
        page.items.into_iter().map(|e| e.request_id).collect::<Vec<_>>()
    };
    assert_eq!(ids(audit::list(&mut c, &audit::AuditFilter::default(), &all).await.unwrap()), ["r0", "r1", "r2"]);
    let by_user = audit::AuditFilter { user_id: Some(root.id), ..Default::default() };
    assert_eq!(ids(audit::list(&mut c, &by_user, &all).await.unwrap()), ["r0", "r2"]);
    let by_project = audit::AuditFilter { project_id: Some(p.id), ..Default::default() };
    assert_eq!(ids(audit::list(&mut c, &by_project, &all).await.unwrap()), ["r0"]);
    let by_op = audit::AuditFilter { operation: Some("project_create".into()), ..Default::default() };
    assert_eq!(ids(audit::list(&mut c, &by_op, &all).await.unwrap()), ["r1"]);
    let window = audit::AuditFilter {
        since: Some(t0 + chrono_seconds(1)),
        until: Some(t0 + chrono_seconds(2)),
        ..Default::default()
    };
    assert_eq!(ids(audit::list(&mut c, &window, &all).await.unwrap()), ["r1"]);
    let pages = all_pages(2, SortBy::NameAscending, |req| {
        let store = store.clone();
        async move {
            let mut c = store.read().await.unwrap();
            audit::list(&mut c, &audit::AuditFilter::default(), &req).await.unwrap()
        }
    })
    .await;
    let ids_by_page: Vec<Vec<String>> =
        pages.into_iter().map(|p| p.into_iter().map(|e| e.request_id).collect()).collect();
    assert_eq!(ids_by_page, [vec!["r0", "r1"], vec!["r2"]]);
    drop(c);
    let mut tx = store.begin().await.unwrap();
    assert_eq!(audit::prune(&mut tx, t0 + chrono_seconds(2)).await.unwrap(), 2);
    tx.commit().await.unwrap();
    let mut c = store.read().await.unwrap();
    assert_eq!(ids(audit::list(&mut c, &audit::AuditFilter::default(), &all).await.unwrap()), ["r2"]);
}
