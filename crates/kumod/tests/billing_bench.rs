//! Benchmarks of tenancy and billing (issue 5), on a real release `kumod` with the simulated
//! hypervisor. They print figures and assert only correctness; run them with
//!
//! ```text
//! cargo test --release -p kumod --test billing_bench -- --ignored --nocapture --test-threads 1
//! ```
//!
//! The data set is written straight into the SQLite database of a stopped `kumod` (as
//! `tests/billing.rs` does): metering reads only the durable events, so an instance's history is
//! its events. The period measured is the month before last: the billing reconciler closes *last*
//! month for every project at start-up, and would otherwise generate the invoices under test before
//! the first request. The benchmarks wait for that first pass before timing anything.

mod common;

use chrono::{DateTime, Datelike, Duration as ChronoDuration, TimeZone, Utc};
use common::{with_store, Kumod};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const PASSWORD: &str = "correct-horse-battery-staple";

fn month(t: DateTime<Utc>) -> String {
    format!("{:04}-{:02}", t.year(), t.month())
}

/// Start of the month before last (UTC) and its `YYYY-MM`.
fn month_before_last() -> (DateTime<Utc>, String) {
    let now = Utc::now();
    let this = Utc.with_ymd_and_hms(now.year(), now.month(), 1, 0, 0, 0).single().expect("month");
    let mut m = this;
    for _ in 0..2 {
        let d = m - ChronoDuration::days(1);
        m = Utc.with_ymd_and_hms(d.year(), d.month(), 1, 0, 0, 0).single().expect("month");
    }
    (m, month(m))
}

async fn prices(tx: &mut kumo_store::Conn, at: DateTime<Utc>) {
    kumo_store::billing::add_price(tx, "instance_type", "k1-small", 12_000, at).await.expect("price");
    kumo_store::billing::add_price(tx, "disk", "", 100_000, at).await.expect("price");
}

/// The life of one k1-small instance: created at `t0`, running from t0+10s for `run_hours`,
/// stopped, destroyed a day later (4 events).
async fn past_instance(tx: &mut kumo_store::Conn, project: uuid::Uuid, name: &str, t0: DateTime<Utc>, run_hours: i64) {
    let destroyed = t0 + ChronoDuration::seconds(10) + ChronoDuration::hours(run_hours) + ChronoDuration::days(1);
    common::past_instance(tx, project, name, t0, run_hours, destroyed).await;
}

/// Instance `i` of a data set: created within the first 10 days of the month, running 1..200 h,
/// so that every life ends within the month.
fn life(start: DateTime<Utc>, i: usize) -> (DateTime<Utc>, i64) {
    let offset = (i as i64 * 7919) % (10 * 86_400);
    (start + ChronoDuration::seconds(offset), (i as i64 % 200) + 1)
}

#[track_caller]
fn ok(resp: (u16, Value), status: u16) -> Value {
    assert_eq!(resp.0, status, "{}", resp.1);
    resp.1
}

/// Waits until the billing reconciler has finished its first pass since (re)start.
fn wait_billing_pass(k: &Kumod) -> Duration {
    let t = Instant::now();
    loop {
        let all = ok(k.get("/v1/system/reconcilers"), 200);
        let billing = all.as_array().expect("list").iter().find(|r| r["name"] == "billing").expect("billing").clone();
        if billing["passes"].as_u64().unwrap_or(0) >= 1 {
            assert_eq!(billing["errors"].as_u64(), Some(0), "{billing}");
            return t.elapsed();
        }
        assert!(t.elapsed() < Duration::from_secs(300), "no billing pass within 300 s");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// (median, p90) in milliseconds.
fn stats(mut v: Vec<Duration>) -> (f64, f64) {
    v.sort();
    let p = |q: f64| ms(v[((v.len() - 1) as f64 * q).round() as usize]);
    (p(0.5), p(0.9))
}

/// GET with a given token; returns status, body size, parsed JSON, and the time until the whole
/// body was received (the client's JSON parsing is not counted).
fn get_as(k: &Kumod, token: &str, path: &str) -> (u16, usize, Value, Duration) {
    let t = Instant::now();
    let resp = k.http.get(format!("{}{path}", k.url)).bearer_auth(token).send().expect("request");
    let status = resp.status().as_u16();
    let text = resp.text().unwrap_or_default();
    let took = t.elapsed();
    let v = serde_json::from_str(&text).unwrap_or(Value::Null);
    (status, text.len(), v, took)
}

fn project_id(k: &Kumod, name: &str) -> uuid::Uuid {
    ok(k.get(&format!("/v1/projects/{name}")), 200)["id"].as_str().expect("id").parse().expect("uuid")
}

#[test]
#[ignore]
fn usage_and_invoice_of_a_project_with_10000_instances() {
    const N: usize = 10_000;
    let mut k = Kumod::sim(&[]);
    k.create_project("big");
    let project = project_id(&k, "big");
    let (start, period) = month_before_last();
    k.kill9();
    let t = Instant::now();
    with_store(&k, async |tx| {
        prices(tx, start - ChronoDuration::days(40)).await;
        for i in 0..N {
            let (t0, hours) = life(start, i);
            past_instance(tx, project, &format!("vm-{i:05}"), t0, hours).await;
        }
    });
    let seed = t.elapsed();
    k.restart();
    let first_pass = wait_billing_pass(&k);
    println!(
        "data set: {N} instances, {} events in {period}, written in {:.1} s; first billing pass after start {:.0} ms",
        N * 4,
        seed.as_secs_f64(),
        ms(first_pass)
    );

    let path = format!("/v1/projects/big/usage?month={period}");
    let mut times = Vec::new();
    let mut lines = 0;
    let mut bytes = 0;
    let mut total = 0;
    for _ in 0..10 {
        let (s, b, v, took) = get_as(&k, &k.token, &path);
        times.push(took);
        assert_eq!(s, 200, "{v}");
        lines = v["items"].as_array().expect("items").len();
        bytes = b;
        total = v["total"].as_i64().expect("total");
    }
    assert_eq!(lines, 2 * N, "a running line and a disk line per instance");
    assert!(total > 0);
    let (med, p90) = stats(times);
    println!(
        "usage {period}, {N} instances: median {med:.0} ms, p90 {p90:.0} ms over 10 requests; {lines} lines, \
         {:.1} MB JSON, total {total} cents",
        bytes as f64 / 1e6
    );

    // The same store read and metering of all 40,000 events, but a window in which every
    // instance is already destroyed: no lines, so no serialisation or transfer.
    let from = kumo_store::ts(start + ChronoDuration::days(27));
    let to = kumo_store::ts(start + ChronoDuration::days(28));
    let quiet = format!("/v1/projects/big/usage?from={from}&to={to}");
    let mut times = Vec::new();
    for _ in 0..10 {
        let (s, _, v, took) = get_as(&k, &k.token, &quiet);
        times.push(took);
        assert_eq!((s, v["items"].as_array().map(Vec::len)), (200, Some(0)), "{v}");
    }
    let (qmed, qp90) = stats(times);
    println!(
        "usage of a day at the end of {period} (all 40,000 events read and metered, 0 lines): median {qmed:.0} ms, \
         p90 {qp90:.0} ms over 10"
    );

    let path = format!("/v1/projects/big/invoices/{period}");
    let (s, _, first, generation) = get_as(&k, &k.token, &path);
    assert_eq!(s, 200, "{first}");
    let mut reads = Vec::new();
    for _ in 0..5 {
        let (s, _, again, took) = get_as(&k, &k.token, &path);
        reads.push(took);
        assert_eq!(s, 200);
        assert_eq!(again, first);
    }
    assert_eq!(first["total"].as_i64(), Some(total));
    let (read_med, _) = stats(reads);
    println!(
        "invoice {period}, {N} instances: generation (first request) {:.0} ms; stored read median {read_med:.0} ms \
         over 5",
        ms(generation)
    );
}

#[test]
#[ignore]
fn invoices_of_1000_projects() {
    const P: usize = 1_000;
    let mut k = Kumod::sim(&[]);
    let (start, period) = month_before_last();
    k.kill9();
    with_store(&k, async |tx| {
        prices(tx, start - ChronoDuration::days(40)).await;
        for p in 0..P {
            let view = kumo_store::projects::create(tx, &format!("p-{p:04}"), "").await.expect("project");
            for j in 0..2 {
                let (t0, hours) = life(start, p * 2 + j);
                past_instance(tx, view.id.get(), &format!("vm-{j}"), t0, hours).await;
            }
        }
    });
    k.restart();
    let first_pass = wait_billing_pass(&k);
    println!(
        "data set: {P} projects x 2 instances x 4 events in {period}; first billing pass after start \
         (closes last month, empty, for all {P}) {:.0} ms",
        ms(first_pass)
    );
    let mut times = Vec::with_capacity(P);
    let mut sum = 0;
    let all = Instant::now();
    for p in 0..P {
        let (s, _, v, took) = get_as(&k, &k.token, &format!("/v1/projects/p-{p:04}/invoices/{period}"));
        times.push(took);
        assert_eq!(s, 200, "{v}");
        assert_eq!(v["items"].as_array().map(Vec::len), Some(4), "{v}");
        sum += v["total"].as_i64().expect("total");
    }
    let total = all.elapsed();
    assert!(sum > 0);
    let (med, p90) = stats(times);
    println!(
        "invoice generation, {P} projects sequentially: {:.2} s total, {:.1} ms per invoice (median {med:.1} ms, \
         p90 {p90:.1} ms)",
        total.as_secs_f64(),
        ms(total) / P as f64
    );
}

#[test]
#[ignore]
fn cost_of_the_authorisation_check() {
    const N: usize = 2_000;
    let k = common::cloud(&["--host-vcpus", "64", "--host-memory-mib", "262144", "--host-disk-gib", "10000"]);
    k.create_project("shop");
    ok(
        k.post(
            "/v1/instances?project=shop",
            json!({"name": "x", "image": common::FIXTURE_IMAGE, "instance_type": "k1-nano"}),
        ),
        202,
    );
    k.wait_state("shop", "x", "running", Duration::from_secs(20));
    ok(k.post("/v1/users", json!({"name": "alice", "password": PASSWORD})), 201);
    ok(k.post("/v1/projects/shop/members", json!({"user": "alice", "role": "collaborator"})), 201);
    let resp = k
        .http
        .post(format!("{}/v1/login", k.url))
        .json(&json!({"username": "alice", "password": PASSWORD}))
        .send()
        .expect("login");
    assert_eq!(resp.status().as_u16(), 200);
    let alice = resp.json::<Value>().expect("json")["token"].as_str().expect("token").to_string();

    let path = "/v1/instances/x?project=shop";
    let run = |token: &str| -> Vec<Duration> {
        (0..N)
            .map(|_| {
                let (s, _, v, took) = get_as(&k, token, path);
                assert_eq!(s, 200, "{v}");
                took
            })
            .collect()
    };
    // Warm up both (connection, token cache), then alternate rounds to share any drift.
    run(&k.token);
    run(&alice);
    let (mut op, mut user) = (Vec::new(), Vec::new());
    for _ in 0..2 {
        op.extend(run(&k.token));
        user.extend(run(&alice));
    }
    let (op_med, op_p90) = stats(op);
    let (user_med, user_p90) = stats(user);
    println!(
        "GET {path}, {} sequential requests each: operator median {:.0} µs (p90 {:.0} µs); \
         tenant collaborator median {:.0} µs (p90 {:.0} µs); difference {:+.0} µs per request",
        2 * N,
        op_med * 1000.0,
        op_p90 * 1000.0,
        user_med * 1000.0,
        user_p90 * 1000.0,
        (user_med - op_med) * 1000.0
    );
}
