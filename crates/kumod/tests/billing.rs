//! Quotas and pay-as-you-go, on a real `kumod` with the simulated hypervisor.
//!
//! Closed months are made without waiting a month: the test stops `kumod` (SIGKILL, as a crash),
//! writes events and prices with past timestamps straight into the data directory's SQLite
//! database through `kumo_store`, and starts `kumod` again.

mod common;

use chrono::{DateTime, Datelike, Duration as ChronoDuration, TimeZone, Utc};
use common::{past_instance, with_store, Cloud, Kumod};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(20);
const IMAGE: &str = common::FIXTURE_IMAGE;

/// kumod on the sim driver with a big host and the `fixture` image (an empty 1 GiB qcow2).
fn cloud() -> Cloud {
    common::cloud(&["--host-vcpus", "64", "--host-memory-mib", "262144", "--host-disk-gib", "10000"])
}

fn put(k: &Kumod, path: &str, body: Value) -> (u16, Value) {
    let resp = k.http.put(format!("{}{path}", k.url)).bearer_auth(&k.token).json(&body).send().expect("request");
    let status = resp.status().as_u16();
    let text = resp.text().unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

#[track_caller]
fn ok(resp: (u16, Value), status: u16) -> Value {
    assert_eq!(resp.0, status, "{}", resp.1);
    resp.1
}

#[track_caller]
fn quota_error(resp: (u16, Value)) -> String {
    assert_eq!(resp.0, 403, "{}", resp.1);
    assert_eq!(resp.1["error_code"], "QuotaExceeded", "{}", resp.1);
    resp.1["message"].as_str().unwrap_or_default().to_string()
}

fn create(k: &Kumod, project: &str, name: &str, itype: &str) -> (u16, Value) {
    k.post(&format!("/v1/instances?project={project}"), json!({"name": name, "image": IMAGE, "instance_type": itype}))
}

fn used(k: &Kumod, project: &str) -> Value {
    ok(k.get(&format!("/v1/projects/{project}/quotas")), 200)["used"].clone()
}

fn instance_count(k: &Kumod, project: &str) -> usize {
    ok(k.get(&format!("/v1/instances?project={project}")), 200)["items"].as_array().expect("items").len()
}

fn host_vcpus_used(k: &Kumod) -> i64 {
    ok(k.get("/v1/hosts"), 200)["items"][0]["vcpus_used"].as_i64().expect("vcpus_used")
}

fn events(k: &Kumod, project: &str) -> Vec<Value> {
    ok(k.get(&format!("/v1/events?project={project}&limit=1000")), 200)["items"].as_array().expect("items").clone()
}

fn time(v: &Value) -> DateTime<Utc> {
    let s = v.as_str().unwrap_or_else(|| panic!("not a time: {v}"));
    DateTime::parse_from_rfc3339(s).unwrap_or_else(|e| panic!("{s}: {e}")).with_timezone(&Utc)
}

/// cost = quantity × unit price, rounded half up once (what every line must satisfy).
fn expected_cost(line: &Value) -> i64 {
    let q = line["quantity"].as_i64().expect("quantity") as i128;
    let p = line["unit_price_micros"].as_i64().expect("unit_price_micros") as i128;
    let per: i128 = if line["price_unit"] == "hour" { 3600 } else { 730 * 3600 };
    let den = per * 10_000;
    ((q * p + den / 2) / den) as i64
}

#[track_caller]
fn assert_lines_add_up(report: &Value) {
    let items = report["items"].as_array().expect("items");
    let mut sum = 0;
    for l in items {
        assert_eq!(l["cost"].as_i64(), Some(expected_cost(l)), "{l}");
        sum += l["cost"].as_i64().expect("cost");
    }
    assert_eq!(report["total"].as_i64(), Some(sum), "{report}");
}

// ---------------------------------------------------------------------------------------------
// Quotas

#[test]
fn each_quota_limit_refuses_with_403_naming_the_limit_and_changes_nothing() {
    let k = cloud();
    k.create_project("shop");
    // Unlimited by default, and nothing used.
    let q = ok(k.get("/v1/projects/shop/quotas"), 200);
    assert_eq!(
        q["limits"],
        json!({"instances": null, "vcpus": null, "memory_gib": null, "storage_gib": null, "floating_ips": null,
               "vpcs": 10, "images": 20, "snapshots": 100, "backups": 100,
               "objects": 1000000, "object_storage_gib": 100}),
        "{q}"
    );
    assert_eq!(q["used"]["instances"], 0, "{q}");

    let set = |body: Value| ok(put(&k, "/v1/projects/shop/quotas", body), 200);
    let q = set(json!({"instances": 2, "vcpus": 16, "memory_gib": 32, "storage_gib": 500, "floating_ips": 2}));
    assert_eq!(q["limits"]["memory_gib"], 32, "{q}");
    assert_eq!(q["limits"]["floating_ips"], 2, "{q}");

    // instances: k1-nano is 1 vCPU, 128 MiB, 1 GiB.
    ok(create(&k, "shop", "a", "k1-nano"), 202);
    ok(create(&k, "shop", "b", "k1-nano"), 202);
    let before = (used(&k, "shop"), instance_count(&k, "shop"), host_vcpus_used(&k));
    let msg = quota_error(create(&k, "shop", "c", "k1-nano"));
    assert!(msg.contains("quota exceeded in project 'shop': instances 2 of 2 used, this needs 1 more"), "{msg}");
    assert_eq!((used(&k, "shop"), instance_count(&k, "shop"), host_vcpus_used(&k)), before);

    // vcpus: k1-medium needs 2.
    set(json!({"vcpus": 3}));
    let msg = quota_error(create(&k, "shop", "c", "k1-medium"));
    assert!(msg.contains("vcpus 2 of 3 used, this needs 2 more"), "{msg}");
    // memory: k1-large needs 4096 MiB.
    set(json!({"memory_gib": 1}));
    let msg = quota_error(create(&k, "shop", "c", "k1-large"));
    assert!(msg.contains("memory 256 of 1024 MiB used, this needs 4096 MiB more"), "{msg}");
    // storage: k1-small has a 5 GiB root disk.
    set(json!({"storage_gib": 5}));
    let msg = quota_error(create(&k, "shop", "c", "k1-small"));
    assert!(msg.contains("storage 2 of 5 GiB used, this needs 5 GiB more"), "{msg}");
    assert_eq!((used(&k, "shop"), instance_count(&k, "shop"), host_vcpus_used(&k)), before);
    assert_eq!(
        before.0,
        json!({"instances": 2, "vcpus": 2, "memory_mib": 256, "storage_gib": 2, "floating_ips": 0,
               "vpcs": 1, "images": 0, "snapshots": 0, "backups": 0, "objects": 0, "object_bytes": 0})
    );

    // Resize charges the difference; refused, nothing changes.
    set(json!({"vcpus": 3}));
    k.wait_state("shop", "a", "running", WAIT);
    ok(k.post_empty("/v1/instances/a/stop?project=shop"), 202);
    k.wait_state("shop", "a", "stopped", WAIT);
    let msg = quota_error(k.post("/v1/instances/a/resize?project=shop", json!({"instance_type": "k1-large"})));
    assert!(msg.contains("vcpus 2 of 3 used, this needs 3 more"), "{msg}");
    let a = ok(k.get("/v1/instances/a?project=shop"), 200);
    assert_eq!(a["instance_type"], "k1-nano", "{a}");
    assert_eq!(used(&k, "shop")["vcpus"], 2);
    let resized = ok(k.post("/v1/instances/a/resize?project=shop", json!({"instance_type": "k1-medium"})), 200);
    assert_eq!(resized["instance_type"], "k1-medium", "{resized}");
    assert_eq!(
        used(&k, "shop"),
        json!({"instances": 2, "vcpus": 3, "memory_mib": 1152, "storage_gib": 11, "floating_ips": 0,
               "vpcs": 1, "images": 0, "snapshots": 0, "backups": 0, "objects": 0, "object_bytes": 0})
    );

    // Operators see every project's use.
    let all = ok(k.get("/v1/system/quotas"), 200);
    let shop = all["items"].as_array().expect("items").iter().find(|q| q["project"] == "shop").expect("shop").clone();
    assert_eq!(shop["used"]["vcpus"], 3, "{all}");
    assert_eq!(shop["limits"]["vcpus"], 3, "{all}");

    // Destroying releases.
    for name in ["a", "b"] {
        ok(k.delete(&format!("/v1/instances/{name}?project=shop")), 202);
        k.wait_state("shop", name, "gone", WAIT);
    }
    assert_eq!(
        used(&k, "shop"),
        json!({"instances": 0, "vcpus": 0, "memory_mib": 0, "storage_gib": 0, "floating_ips": 0,
               "vpcs": 1, "images": 0, "snapshots": 0, "backups": 0, "objects": 0, "object_bytes": 0})
    );

    // Bad limits are 400; unknown projects 404.
    assert_eq!(put(&k, "/v1/projects/shop/quotas", json!({"vcpus": -1})).0, 400);
    assert_eq!(put(&k, "/v1/projects/shop/quotas", json!({"cpus": 1})).0, 400);
    assert_eq!(put(&k, "/v1/projects/nope/quotas", json!({})).0, 404);
}

#[test]
fn concurrent_creates_never_overshoot_the_quota() {
    let k = cloud();
    k.create_project("shop");
    ok(put(&k, "/v1/projects/shop/quotas", json!({"instances": 7})), 200);
    let results: Vec<(u16, Value)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..100)
            .map(|i| {
                let k = &k;
                s.spawn(move || create(k, "shop", &format!("vm-{i}"), "k1-nano"))
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("thread")).collect()
    });
    let created = results.iter().filter(|(s, _)| *s == 202).count();
    for (s, v) in &results {
        assert!(*s == 202 || (*s == 403 && v["error_code"] == "QuotaExceeded"), "{s} {v}");
    }
    assert_eq!(created, 7, "{results:?}");
    assert_eq!(instance_count(&k, "shop"), 7);
    assert_eq!(used(&k, "shop")["instances"], 7);
    assert_eq!(used(&k, "shop")["vcpus"], 7);
}

// ---------------------------------------------------------------------------------------------
// Prices and usage

#[test]
fn prices_are_kept_with_history_and_validated() {
    let k = cloud();
    let p1 = ok(
        put(&k, "/v1/system/prices", json!({"kind": "instance_type", "name": "k1-small", "unit_price": "0.012"})),
        200,
    );
    assert_eq!(p1["unit_price_micros"], 12_000, "{p1}");
    assert_eq!(p1["price_unit"], "hour", "{p1}");
    let p2 = ok(
        put(&k, "/v1/system/prices", json!({"kind": "instance_type", "name": "k1-small", "unit_price": "0.015"})),
        200,
    );
    ok(put(&k, "/v1/system/prices", json!({"kind": "volume", "unit_price": "0.10"})), 200);
    let list = ok(k.get("/v1/system/prices"), 200);
    let small: Vec<&Value> =
        list["items"].as_array().expect("items").iter().filter(|p| p["name"] == "k1-small").collect();
    assert_eq!(small.len(), 2, "{list}");
    assert_eq!(small[0]["effective_until"], p2["effective_from"], "{list}");
    assert!(small[1]["effective_until"].is_null(), "{list}");
    assert!(time(&p2["effective_from"]) >= time(&p1["effective_from"]));
    let vol = list["items"].as_array().expect("items").iter().find(|p| p["kind"] == "volume").expect("volume").clone();
    assert_eq!((vol["unit_price"].as_str(), vol["price_unit"].as_str()), (Some("0.10"), Some("GiB-month")), "{vol}");
    for bad in [
        json!({"kind": "instance_type", "name": "k1-small", "unit_price": "0.0000001"}),
        json!({"kind": "instance_type", "name": "k1-small", "unit_price": "1e-3"}),
        json!({"kind": "instance_type", "name": "no-such-type", "unit_price": "1"}),
        json!({"kind": "instance_type", "unit_price": "1"}),
        json!({"kind": "volume", "name": "x", "unit_price": "1"}),
        json!({"kind": "bananas", "unit_price": "1"}),
    ] {
        let (s, v) = put(&k, "/v1/system/prices", bad.clone());
        assert_eq!((s, v["error_code"].as_str()), (400, Some("InvalidValue")), "{bad}: {v}");
    }
}

#[test]
fn a_price_change_mid_period_applies_only_from_its_effective_time() {
    let k = cloud();
    k.create_project("shop");
    // 36.00 per hour is one cent per second; 72.00 two.
    ok(put(&k, "/v1/system/prices", json!({"kind": "instance_type", "name": "k1-nano", "unit_price": "36.00"})), 200);
    ok(put(&k, "/v1/system/prices", json!({"kind": "disk", "unit_price": "100.00"})), 200);
    ok(create(&k, "shop", "web", "k1-nano"), 202);
    k.wait_state("shop", "web", "running", WAIT);
    std::thread::sleep(Duration::from_millis(2500)); // let billable time pass
    let change = ok(
        put(&k, "/v1/system/prices", json!({"kind": "instance_type", "name": "k1-nano", "unit_price": "72.00"})),
        200,
    );
    let changed_at = time(&change["effective_from"]);
    std::thread::sleep(Duration::from_millis(2500));
    ok(k.post_empty("/v1/instances/web/stop?project=shop"), 202);
    k.wait_state("shop", "web", "stopped", WAIT);

    let usage = ok(k.get("/v1/projects/shop/usage"), 200);
    assert_lines_add_up(&usage);
    let running: Vec<&Value> =
        usage["items"].as_array().expect("items").iter().filter(|l| l["resource_type"] == "instance").collect();
    assert_eq!(running.len(), 2, "{usage}");
    assert_eq!(running[0]["unit_price"], "36.00", "{usage}");
    assert_eq!(running[1]["unit_price"], "72.00", "{usage}");
    assert_eq!(time(&running[0]["intervals"].as_array().expect("iv").last().expect("iv")["end"]), changed_at);
    assert_eq!(time(&running[1]["intervals"][0]["start"]), changed_at);
    // The seconds add up to the time between `running` and `stopped`.
    let evs = events(&k, "shop");
    let at = |state: &str| time(&evs.iter().find(|e| e["to_state"] == state).expect(state)["time_created"]);
    let truth = (at("stopped") - at("running")).num_milliseconds();
    let billed: i64 = running.iter().map(|l| l["quantity"].as_i64().expect("q")).sum::<i64>() * 1000;
    assert!((billed - truth).abs() <= 1000, "billed {billed} ms, ran {truth} ms: {usage}");
    assert!(
        running[0]["quantity"].as_i64().expect("q") >= 2 && running[1]["quantity"].as_i64().expect("q") >= 2,
        "{usage}"
    );
    // The stopped instance's disk is still billed, at the disk price.
    let disk =
        usage["items"].as_array().expect("items").iter().find(|l| l["resource_type"] == "disk").expect("disk").clone();
    assert_eq!((disk["unit"].as_str(), disk["unit_price"].as_str()), (Some("GiB-second"), Some("100.00")), "{disk}");

    // A window that ends before the change sees only the old price.
    let to = changed_at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    let early = ok(k.get(&format!("/v1/projects/shop/usage?to={}", to.replace('+', "%2B"))), 200);
    assert_lines_add_up(&early);
    let prices: Vec<&str> = early["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter(|l| l["resource_type"] == "instance")
        .filter_map(|l| l["unit_price"].as_str())
        .collect();
    assert_eq!(prices, ["36.00"], "{early}");
    assert_eq!(k.get("/v1/projects/shop/usage?from=yesterday").0, 400);
    assert_eq!(k.get("/v1/projects/shop/usage?from=2030-01-02T00:00:00Z&to=2030-01-01T00:00:00Z").0, 400);
    let future = ok(k.get("/v1/projects/shop/usage?month=2099-01"), 200);
    assert_eq!((future["items"].as_array().map(Vec::len), future["total"].as_i64()), (Some(0), Some(0)), "{future}");
}

#[test]
fn usage_loses_no_time_across_a_kumod_crash() {
    let mut k = cloud();
    k.create_project("shop");
    ok(create(&k, "shop", "web", "k1-nano"), 202);
    k.wait_state("shop", "web", "running", WAIT);
    k.kill9();
    std::thread::sleep(Duration::from_millis(1500)); // kumod is down: time passes
    k.restart();
    // The sim guest died with kumod: the reconciler records it stopped.
    k.wait_state("shop", "web", "stopped", WAIT);
    let evs = events(&k, "shop");
    let at = |state: &str| time(&evs.iter().find(|e| e["to_state"] == state).expect(state)["time_created"]);
    let truth = (at("stopped") - at("running")).num_milliseconds();
    assert!(truth >= 1500, "{evs:?}");
    let usage = ok(k.get("/v1/projects/shop/usage"), 200);
    let line = usage["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|l| l["resource_type"] == "instance")
        .expect("line")
        .clone();
    let billed = line["quantity"].as_i64().expect("q") * 1000;
    assert!((billed - truth).abs() <= 500, "billed {billed} ms, ran {truth} ms: {usage}");
    assert_eq!(line["intervals"].as_array().expect("iv").len(), 1, "one interval, not two: {line}");
}

// ---------------------------------------------------------------------------------------------
// Invoices

fn month(t: DateTime<Utc>) -> String {
    format!("{:04}-{:02}", t.year(), t.month())
}

#[test]
fn a_closed_month_is_invoiced_once_and_never_changes() {
    let mut k = cloud();
    k.create_project("shop");
    let project: uuid::Uuid = ok(k.get("/v1/projects/shop"), 200)["id"].as_str().expect("id").parse().expect("uuid");
    let now = Utc::now();
    let this_month = Utc.with_ymd_and_hms(now.year(), now.month(), 1, 0, 0, 0).single().expect("month");
    let last_month_day = this_month - ChronoDuration::days(1);
    let last = Utc.with_ymd_and_hms(last_month_day.year(), last_month_day.month(), 1, 0, 0, 0).single().expect("month");
    let period = month(last);

    k.kill9();
    with_store(&k, async |tx| {
        let long_ago = last - ChronoDuration::days(40);
        kumo_store::billing::add_price(tx, "instance_type", "k1-small", 12_000, long_ago).await.expect("price");
        kumo_store::billing::add_price(tx, "disk", "", 100_000, long_ago).await.expect("price");
        // Running 240 h (10 days); disk from day 1 to day 21 (20 days x 5 GiB).
        let t0 = last + ChronoDuration::days(1);
        past_instance(tx, project, "old", t0, 240, t0 + ChronoDuration::days(20)).await;
    });
    k.restart();

    // The current month has no invoice yet.
    let (s, v) = k.get(&format!("/v1/projects/shop/invoices/{}", month(now)));
    assert_eq!((s, v["error_code"].as_str()), (409, Some("InvalidState")), "{v}");
    assert!(v["message"].as_str().unwrap_or_default().contains("/v1/projects/shop/usage"), "{v}");
    assert_eq!(k.get("/v1/projects/shop/invoices/2026-13").0, 400);
    assert_eq!(k.get("/v1/projects/shop/invoices/1999-01").0, 404);

    let invoice = ok(k.get(&format!("/v1/projects/shop/invoices/{period}")), 200);
    assert_lines_add_up(&invoice);
    let lines = invoice["items"].as_array().expect("items");
    assert_eq!(lines.len(), 2, "{invoice}");
    let run = lines.iter().find(|l| l["resource_type"] == "instance").expect("running line");
    // 864,000 s at 0.012 per hour: 1.2 cents per hour x 240 h = 288 cents.
    assert_eq!(
        (run["quantity"].as_i64(), run["cost"].as_i64(), run["resource"].as_str()),
        (Some(864_000), Some(288), Some("old")),
        "{run}"
    );
    // 20 days x 5 GiB = 8,640,000 GiB-seconds at 0.10 per GiB-month (730 h): 32.88 -> 33 cents.
    let disk = lines.iter().find(|l| l["resource_type"] == "disk").expect("disk line");
    assert_eq!((disk["quantity"].as_i64(), disk["cost"].as_i64()), (Some(8_640_000), Some(33)), "{disk}");
    assert_eq!(disk["intervals"][0]["gib"], 5, "{disk}");
    assert_eq!(invoice["total"], 321, "{invoice}");
    let list = ok(k.get("/v1/projects/shop/invoices"), 200);
    let listed =
        list["items"].as_array().expect("items").iter().find(|i| i["period"] == period).expect("listed").clone();
    assert_eq!((listed["total"].as_i64(), listed["lines"].as_u64()), (Some(321), Some(2)), "{list}");

    // Later events in that month and a later price change do not change the stored invoice.
    k.kill9();
    with_store(&k, async |tx| {
        kumo_store::billing::add_price(tx, "instance_type", "k1-small", 5_000_000, last).await.expect("price");
        past_instance(tx, project, "late", last + ChronoDuration::days(2), 24, last + ChronoDuration::days(3)).await;
    });
    k.restart();
    let again = ok(k.get(&format!("/v1/projects/shop/invoices/{period}")), 200);
    assert_eq!(again, invoice);
    // ... while usage, computed afresh, sees them.
    let usage = ok(k.get(&format!("/v1/projects/shop/usage?month={period}")), 200);
    assert_lines_add_up(&usage);
    assert!(usage["total"].as_i64().expect("total") > 321, "{usage}");
}

/// Usage reads only the window's events and, per resource, its last events before the window:
/// a resource whose state was set before the month and not changed in it is billed for the
/// whole month (instance running time and disk, a volume, a floating IP), and one destroyed
/// before the month is not billed at all.
#[test]
fn a_resource_set_before_the_window_is_billed_across_a_month_end() {
    let mut k = cloud();
    k.create_project("steady");
    let project: kumo_types::ProjectId =
        ok(k.get("/v1/projects/steady"), 200)["id"].as_str().expect("id").parse().expect("uuid");
    let now = Utc::now();
    let this_month = Utc.with_ymd_and_hms(now.year(), now.month(), 1, 0, 0, 0).single().expect("month");
    let last_month_day = this_month - ChronoDuration::days(1);
    let last = Utc.with_ymd_and_hms(last_month_day.year(), last_month_day.month(), 1, 0, 0, 0).single().expect("month");
    let period = month(last);
    let month_secs = (this_month - last).num_seconds();

    k.kill9();
    with_store(&k, async |tx| {
        let long_ago = last - ChronoDuration::days(90);
        kumo_store::billing::add_price(tx, "instance_type", "k1-small", 12_000, long_ago).await.expect("price");
        kumo_store::billing::add_price(tx, "disk", "", 100_000, long_ago).await.expect("price");
        kumo_store::billing::add_price(tx, "volume", "", 100_000, long_ago).await.expect("price");
        kumo_store::billing::add_price(tx, "floating_ip", "", 5_000, long_ago).await.expect("price");
        let ev = |id, rt, name, kind, to: Option<&'static str>, detail: Option<String>| kumo_store::events::NewEvent {
            project_id: Some(project),
            resource_type: rt,
            resource_id: id,
            resource_name: name,
            kind,
            from_state: None,
            to_state: to,
            cause: "test: before the window",
            detail,
        };
        let size = |ty: &str, gib: i64| {
            Some(json!({"instance_type": ty, "vcpus": 1, "memory_mib": 512, "disk_gib": gib}).to_string())
        };
        // Running since two months before, resized (k1-small, 5 GiB) the month before, no event since.
        let vm = uuid::Uuid::now_v7();
        let t = last - ChronoDuration::days(60);
        for (at, kind, to, detail) in [
            (t, "created", Some("creating"), size("k1-large", 40)),
            (t + ChronoDuration::seconds(10), "state_changed", Some("running"), size("k1-large", 40)),
            (last - ChronoDuration::days(20), "resized", None, size("k1-small", 5)),
            (last - ChronoDuration::days(10), "note", None, None),
        ] {
            kumo_store::events::record_at(tx, &ev(vm, "instance", "steady-vm", kind, to, detail), at)
                .await
                .expect("ev");
        }
        // Destroyed before the month: nothing to bill.
        past_instance(tx, project.get(), "gone", last - ChronoDuration::days(30), 24, last - ChronoDuration::days(25))
            .await;
        // A 7 GiB volume created before the month, attached (same size), never deleted.
        let vol = uuid::Uuid::now_v7();
        let gib = Some(json!({"size_gib": 7}).to_string());
        kumo_store::events::record_at(tx, &ev(vol, "volume", "data", "created", Some("available"), gib.clone()), t)
            .await
            .expect("ev");
        kumo_store::events::record_at(
            tx,
            &ev(vol, "volume", "data", "state_changed", Some("attached"), None),
            last - ChronoDuration::days(3),
        )
        .await
        .expect("ev");
        // A floating IP held since before the month, attached before it.
        let ip = uuid::Uuid::now_v7();
        kumo_store::events::record_at(tx, &ev(ip, "floating_ip", "ip", "created", None, None), t).await.expect("ev");
        kumo_store::events::record_at(tx, &ev(ip, "floating_ip", "ip", "attached", None, None), t).await.expect("ev");
    });
    k.restart();

    let usage = ok(k.get(&format!("/v1/projects/steady/usage?month={period}")), 200);
    assert_lines_add_up(&usage);
    let items = usage["items"].as_array().expect("items");
    let line = |rt: &str| {
        items.iter().find(|l| l["resource_type"] == rt).unwrap_or_else(|| panic!("no {rt} line: {usage}")).clone()
    };
    assert!(items.iter().all(|l| l["resource"] != "gone"), "{usage}");
    assert_eq!(items.len(), 4, "{usage}");
    let run = line("instance");
    assert_eq!((run["quantity"].as_i64(), run["price_name"].as_str()), (Some(month_secs), Some("k1-small")), "{run}");
    assert_eq!(time(&run["intervals"][0]["start"]), last, "{run}");
    assert_eq!(time(&run["intervals"][0]["end"]), this_month, "{run}");
    assert_eq!(line("disk")["quantity"].as_i64(), Some(5 * month_secs), "{usage}");
    assert_eq!(line("volume")["quantity"].as_i64(), Some(7 * month_secs), "{usage}");
    assert_eq!(line("floating_ip")["quantity"].as_i64(), Some(month_secs), "{usage}");
    // The invoice of that month (generated in a transaction, the other read path) agrees.
    let invoice = ok(k.get(&format!("/v1/projects/steady/invoices/{period}")), 200);
    assert_eq!(invoice["total"], usage["total"], "{invoice}\n{usage}");
    assert_eq!(invoice["items"].as_array().map(Vec::len), Some(4), "{invoice}");
}

// ---------------------------------------------------------------------------------------------
// Budgets

#[test]
fn a_budget_alert_is_recorded_once_when_month_to_date_cost_crosses_the_threshold() {
    let k = cloud();
    k.create_project("shop");
    let none = ok(k.get("/v1/projects/shop/budget"), 200);
    assert!(none["monthly"].is_null() && none["alert_at_percent"].is_null(), "{none}");
    assert_eq!(none["month_to_date"], 0, "{none}");
    assert_eq!(put(&k, "/v1/projects/shop/budget", json!({"monthly": "abc", "alert_at_percent": 80})).0, 400);
    assert_eq!(put(&k, "/v1/projects/shop/budget", json!({"monthly": "1", "alert_at_percent": 0})).0, 400);
    // One cent per second of running k1-nano; alert at 80% of 0.05: at 4 cents.
    ok(put(&k, "/v1/system/prices", json!({"kind": "instance_type", "name": "k1-nano", "unit_price": "36.00"})), 200);
    let b = ok(put(&k, "/v1/projects/shop/budget", json!({"monthly": "0.05", "alert_at_percent": 80})), 200);
    assert_eq!((b["monthly"].as_str(), b["monthly_cents"].as_i64()), (Some("0.05"), Some(5)), "{b}");
    assert_eq!(b["alert_at_percent"], 80, "{b}");
    let alerts = |k: &Kumod| events(k, "shop").into_iter().filter(|e| e["kind"] == "budget_alert").collect::<Vec<_>>();
    assert!(alerts(&k).is_empty());

    ok(create(&k, "shop", "web", "k1-nano"), 202);
    k.wait_state("shop", "web", "running", WAIT);
    let deadline = Instant::now() + Duration::from_secs(30);
    while alerts(&k).is_empty() {
        assert!(
            Instant::now() < deadline,
            "no budget alert within 30 s: {}",
            ok(k.get("/v1/projects/shop/budget"), 200)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let alert = alerts(&k)[0].clone();
    assert!(alert["cause"].as_str().unwrap_or_default().contains("of the monthly budget 0.05"), "{alert}");
    assert!(alert["detail"]["month_to_date"].as_i64().expect("mtd") >= 4, "{alert}");
    assert_eq!(alert["resource_type"], "project", "{alert}");

    // More billing passes: still exactly one alert this month.
    let passes = |k: &Kumod| -> u64 {
        let all = ok(k.get("/v1/system/reconcilers"), 200);
        all.as_array().expect("list").iter().find(|r| r["name"] == "billing").expect("billing")["passes"]
            .as_u64()
            .expect("passes")
    };
    let seen = passes(&k);
    let deadline = Instant::now() + Duration::from_secs(30);
    while passes(&k) < seen + 2 {
        assert!(Instant::now() < deadline, "the billing reconciler does not run");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(alerts(&k).len(), 1);
    let b = ok(k.get("/v1/projects/shop/budget"), 200);
    assert!(b["month_to_date"].as_i64().expect("mtd") >= 4, "{b}");
    assert_eq!(b["last_alert_period"], json!(month(Utc::now())), "{b}");
}
