//! Store tests: quotas and billing (prices, invoices, budgets).
//!
//! Each case runs on SQLite and on PostgreSQL: see `common.rs`.

use crate::common::*;
use kumo_store::events::{self, EventState, NewEvent};
use kumo_store::{Store, StoreError};
use kumo_types::{InstanceState, InvoiceId};
use uuid::Uuid;

store_tests!(quotas_charge_conditionally_and_never_overshoot, billing_prices_invoices_budgets_and_metering_events);

async fn quotas_charge_conditionally_and_never_overshoot(store: &Store) {
    use kumo_store::quotas::{self, QuotaAmounts, QuotaLimits};
    let p = create_project(store, "shop").await;
    let one = QuotaAmounts { instances: 1, vcpus: 2, memory_mib: 512, storage_gib: 5, ..Default::default() };
    // Unlimited until limits are set, but for the counts with finite defaults; no row needed.
    let q = quotas::get(&mut store.read().await.unwrap(), p.id).await.unwrap().expect("project");
    let defaults = QuotaLimits {
        vpcs: Some(quotas::DEFAULT_VPCS),
        images: Some(quotas::DEFAULT_IMAGES),
        snapshots: Some(quotas::DEFAULT_SNAPSHOTS),
        backups: Some(quotas::DEFAULT_BACKUPS),
        objects: Some(quotas::DEFAULT_OBJECTS),
        object_bytes: Some(quotas::DEFAULT_OBJECT_BYTES),
        ..Default::default()
    };
    assert_eq!((q.limits, q.used), (defaults, QuotaAmounts::default()));
    // The same defaults once the row exists (the columns' defaults), and the counts charge.
    let mut tx = store.begin().await.unwrap();
    let vpc = QuotaAmounts { vpcs: 1, ..Default::default() };
    for _ in 0..quotas::DEFAULT_VPCS {
        assert!(quotas::charge(&mut tx, p.id, vpc).await.unwrap());
    }
    assert!(!quotas::charge(&mut tx, p.id, vpc).await.unwrap(), "11 VPCs > 10");
    let q = quotas::get(&mut tx, p.id).await.unwrap().expect("project");
    assert_eq!((q.limits, q.used.vpcs), (defaults, 10));
    quotas::release(&mut tx, p.id, QuotaAmounts { vpcs: 10, ..Default::default() }).await.unwrap();
    tx.commit().await.unwrap();
    let mut tx = store.begin().await.unwrap();
    assert!(quotas::charge(&mut tx, p.id, one).await.unwrap());
    quotas::set_limits(&mut tx, p.id, &QuotaLimits { vcpus: Some(5), ..Default::default() }).await.unwrap();
    assert!(quotas::charge(&mut tx, p.id, one).await.unwrap());
    assert!(!quotas::charge(&mut tx, p.id, one).await.unwrap(), "6 vCPUs > 5");
    // A shrinking delta always passes, even over a limit lowered below use.
    quotas::set_limits(&mut tx, p.id, &QuotaLimits { vcpus: Some(1), ..Default::default() }).await.unwrap();
    let shrink = QuotaAmounts { vcpus: -1, ..Default::default() };
    assert!(quotas::charge(&mut tx, p.id, shrink).await.unwrap());
    quotas::release(&mut tx, p.id, one).await.unwrap();
    tx.commit().await.unwrap();
    let q = quotas::get(&mut store.read().await.unwrap(), p.id).await.unwrap().expect("project");
    assert_eq!(q.used, QuotaAmounts { instances: 1, vcpus: 1, memory_mib: 512, storage_gib: 5, ..Default::default() });
    assert_eq!(q.limits.vcpus, Some(1));

    // Concurrent charges in separate transactions never overshoot.
    let mut tx = store.begin().await.unwrap();
    quotas::set_limits(&mut tx, p.id, &QuotaLimits { instances: Some(6), ..Default::default() }).await.unwrap();
    tx.commit().await.unwrap();
    let unit = QuotaAmounts { instances: 1, ..Default::default() };
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut tx = store.begin().await.unwrap();
                let ok = quotas::charge(&mut tx, p.id, unit).await.unwrap();
                tx.commit().await.unwrap();
                ok
            })
        })
        .collect();
    let mut granted = 0;
    for t in tasks {
        granted += t.await.unwrap() as i64;
    }
    assert_eq!(granted, 5);
    let all = quotas::all(&mut store.read().await.unwrap()).await.unwrap();
    assert_eq!(all.iter().find(|q| q.project_id == p.id).map(|q| q.used.instances), Some(6));
}

async fn billing_prices_invoices_budgets_and_metering_events(store: &Store) {
    use kumo_store::billing::{self, InvoiceRecord, LineRecord};
    let p = create_project(store, "shop").await;
    let t0 = chrono::DateTime::parse_from_rfc3339("2026-10-01T00:00:00Z").unwrap().with_timezone(&chrono::Utc);
    let mut tx = store.begin().await.unwrap();
    billing::add_price(&mut tx, "instance_type", "k1-small", 12_000, t0).await.unwrap();
    billing::add_price(&mut tx, "instance_type", "k1-small", 15_000, t0 + chrono_seconds(3600)).await.unwrap();
    billing::add_price(&mut tx, "disk", "", 100_000, t0).await.unwrap();
    let r = Uuid::now_v7();
    for (i, state) in ["creating", "running", "stopped"].iter().enumerate() {
        let e = NewEvent {
            project_id: Some(p.id),
            resource_type: "instance",
            resource_id: r,
            resource_name: "web",
            kind: "state_changed",
            from_state: None,
            to_state: Some(*state),
            cause: "test",
            detail: Some(r#"{"instance_type":"k1-small","vcpus":1,"memory_mib":512,"disk_gib":5}"#.into()),
        };
        events::record_at(&mut tx, &e, t0 + chrono_seconds(10 * i as i64)).await.unwrap();
    }
    tx.commit().await.unwrap();
    let mut conn = store.read().await.unwrap();
    let prices = billing::prices(&mut conn).await.unwrap();
    assert_eq!(
        prices.iter().map(|p| (p.kind.as_str(), p.unit_price_micros)).collect::<Vec<_>>(),
        [("disk", 100_000), ("instance_type", 12_000), ("instance_type", 15_000)]
    );
    let rows = events::for_metering(&mut conn, p.id, "instance", t0 + chrono_seconds(15)).await.unwrap();
    assert_eq!(
        rows.iter().map(|r| r.to_state).collect::<Vec<_>>(),
        [Some(EventState::Instance(InstanceState::Creating)), Some(EventState::Instance(InstanceState::Running))]
    );
    assert!(rows[0].detail.as_deref().is_some_and(|d| d.contains("k1-small")));
    // A state the instance state machine does not have is corrupt data, not a string to bill by.
    let q = create_project(store, "odd-states").await;
    let mut tx = store.begin().await.unwrap();
    let odd = NewEvent {
        project_id: Some(q.id),
        resource_type: "instance",
        resource_id: Uuid::now_v7(),
        resource_name: "odd",
        kind: "state_changed",
        from_state: None,
        to_state: Some("hibernating"),
        cause: "test",
        detail: None,
    };
    events::record_at(&mut tx, &odd, t0).await.unwrap();
    tx.commit().await.unwrap();
    let err = events::for_metering(&mut conn, q.id, "instance", t0 + chrono_seconds(15)).await.unwrap_err();
    assert!(matches!(&err, StoreError::Corrupt(m) if m.contains("hibernating")), "{err:?}");
    assert_eq!(events::earliest_time(&mut conn, p.id).await.unwrap().map(|t| t <= t0), Some(true));
    drop(conn);

    let inv = InvoiceRecord {
        id: InvoiceId::new_v7(),
        period: "2026-10".into(),
        period_start: t0,
        period_end: t0 + chrono_seconds(31 * 86400),
        total_cents: 7,
        time_created: t0 + chrono_seconds(31 * 86400 + 5),
        lines: vec![LineRecord {
            resource_type: "instance".into(),
            resource_id: r,
            resource_name: "web".into(),
            price_kind: "instance_type".into(),
            price_name: "k1-small".into(),
            quantity: 10,
            unit: "second".into(),
            unit_price_micros: 12_000,
            price_unit: "hour".into(),
            cost_cents: 7,
            intervals: "[]".into(),
        }],
    };
    let mut tx = store.begin().await.unwrap();
    assert_eq!(billing::insert_invoice(&mut tx, p.id, &inv).await.unwrap(), inv);
    // A second generation returns the stored one, unchanged.
    let other = InvoiceRecord { id: InvoiceId::new_v7(), total_cents: 999, lines: vec![], ..inv.clone() };
    assert_eq!(billing::insert_invoice(&mut tx, p.id, &other).await.unwrap(), inv);
    billing::set_budget(&mut tx, p.id, 5000, 80).await.unwrap();
    billing::set_budget(&mut tx, p.id, 6000, 90).await.unwrap();
    assert!(billing::mark_alerted(&mut tx, p.id, "2026-10").await.unwrap());
    assert!(!billing::mark_alerted(&mut tx, p.id, "2026-10").await.unwrap(), "one alert per month");
    assert!(billing::mark_alerted(&mut tx, p.id, "2026-11").await.unwrap());
    tx.commit().await.unwrap();
    let mut conn = store.read().await.unwrap();
    assert_eq!(billing::invoice(&mut conn, p.id, "2026-10").await.unwrap(), Some(inv.clone()));
    assert_eq!(billing::invoice(&mut conn, p.id, "2026-09").await.unwrap(), None);
    let b = billing::budget(&mut conn, p.id).await.unwrap().expect("budget");
    assert_eq!((b.monthly_cents, b.alert_at_percent, b.last_alert_period.as_deref()), (6000, 90, Some("2026-11")));
    assert_eq!(billing::budgets(&mut conn).await.unwrap().len(), 1);
    drop(conn);

    // Two writers close the same month at once (a request and the billing task): the second waits
    // for the first and keeps its invoice instead of failing on the unique index.
    let nov = InvoiceRecord { id: InvoiceId::new_v7(), period: "2026-11".into(), ..inv.clone() };
    let rival = InvoiceRecord { id: InvoiceId::new_v7(), total_cents: 1, lines: vec![], ..nov.clone() };
    let mut first = store.begin().await.unwrap();
    assert_eq!(billing::insert_invoice(&mut first, p.id, &nov).await.unwrap(), nov);
    let commit_later = async {
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        first.commit().await.unwrap();
    };
    let second = async {
        let mut tx = store.begin().await.unwrap();
        let kept = billing::insert_invoice(&mut tx, p.id, &rival).await.unwrap();
        tx.commit().await.unwrap();
        kept
    };
    let ((), kept) = tokio::join!(commit_later, second);
    assert_eq!(kept, nov);
}
