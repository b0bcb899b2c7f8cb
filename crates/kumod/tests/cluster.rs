//! A cluster on one machine (issue 13): two `kumod controller`s on one PostgreSQL database and
//! three `kumod agent`s (sim driver) that join with one-time tokens and are reached over HTTPS.
//! One test walks through what an operator does, because the fixture (a database, five
//! processes) is what costs.
//!
//! Needs PostgreSQL: KUMO_TEST_POSTGRES_URL (scripts/postgres.sh prints it); scripts/test.sh
//! sets it. Without it the test fails: a missing prerequisite is never a silent skip.

mod common;

use common::cluster::{wait_for, Cluster, UNREACHABLE_AFTER};
use common::fixture_image_cache;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

#[test]
fn a_cluster_of_two_controllers_and_three_hosts() {
    let mut cl = Cluster::start(2, fixture_image_cache());

    // Zones, join tokens; an unknown zone is refused with nothing made.
    for zone in ["zone-a", "zone-b"] {
        let (s, v) = cl.post(0, "/v1/zones", json!({"name": zone}));
        assert_eq!(s, 201, "{v}");
    }
    let (s, v) = cl.post(1, "/v1/join-tokens", json!({"zone": "nowhere"}));
    assert_eq!(s, 400, "{v}");

    // Three hosts join, through either controller.
    let tokens = [cl.join_token("zone-a"), cl.join_token("zone-a"), cl.join_token("zone-b")];
    for (i, zone) in ["zone-a", "zone-a", "zone-b"].iter().enumerate() {
        let name = format!("h{}", i + 1);
        cl.start_agent(&name, zone, &tokens[i]);
    }
    wait_for("3 ready hosts", Duration::from_secs(60), &|| cl.logs(), || {
        let hosts = cl.hosts(1);
        (hosts.len() == 3 && hosts.iter().all(|h| h["state"] == "ready")).then_some(())
    });
    let hosts = cl.hosts(0);
    let zone_of = |n: &str| hosts.iter().find(|h| h["name"] == n).map(|h| h["zone"].clone()).unwrap_or_default();
    assert_eq!((zone_of("h1"), zone_of("h3")), (json!("zone-a"), json!("zone-b")), "{hosts:?}");

    // A join token works once: used again (here directly, as a stolen token would be) → refused.
    let agent_join = json!({
        "token": tokens[0], "zone": null,
        "info": {"name": "h9", "driver": "sim", "accelerator": "simulated", "accelerator_reason": "",
                 "vcpus": 1, "memory_mib": 512, "disk_gib": 1, "gpus": 0},
        "address": "https://127.0.0.1:1", "fingerprint": cl.fingerprint, "agent_secret": "x".repeat(40),
    });
    let resp = cl.http.post(format!("{}/agent/v1/join", cl.urls[1])).json(&agent_join).send().expect("join");
    assert_eq!(resp.status().as_u16(), 401, "{}", resp.text().unwrap_or_default());
    assert_eq!(cl.hosts(0).len(), 3, "nothing was added by the refused join");

    // An agent cannot act for another host: h1's credential with h2's id → 403.
    let m1: Value =
        serde_json::from_slice(&std::fs::read(cl.dir.path().join("h1/membership.json")).expect("m1")).expect("json");
    let m2: Value =
        serde_json::from_slice(&std::fs::read(cl.dir.path().join("h2/membership.json")).expect("m2")).expect("json");
    let hb = json!({"host_id": m2["host_id"], "info": agent_join["info"], "address": "https://127.0.0.1:1",
                    "fingerprint": cl.fingerprint});
    let resp = cl
        .http
        .post(format!("{}/agent/v1/heartbeat", cl.urls[0]))
        .bearer_auth(m1["credential"].as_str().expect("credential"))
        .json(&hb)
        .send()
        .expect("heartbeat");
    assert_eq!(resp.status().as_u16(), 403, "{}", resp.text().unwrap_or_default());
    // A malformed report → 400, an unknown credential → 401; nothing changes.
    let bad = json!({"host_id": m1["host_id"], "info": agent_join["info"], "address": "ftp://x",
                     "fingerprint": "nope"});
    let resp = cl
        .http
        .post(format!("{}/agent/v1/heartbeat", cl.urls[0]))
        .bearer_auth(m1["credential"].as_str().expect("credential"))
        .json(&bad)
        .send()
        .expect("heartbeat");
    assert_eq!(resp.status().as_u16(), 400, "{}", resp.text().unwrap_or_default());
    let resp =
        cl.http.post(format!("{}/agent/v1/heartbeat", cl.urls[0])).bearer_auth("kumo_not_a_host").json(&hb).send();
    assert_eq!(resp.expect("heartbeat").status().as_u16(), 401);
    // A join for another zone than the token's → 400; an agent address that is not https → 400.
    let token = cl.join_token("zone-a");
    let mut wrong_zone = agent_join.clone();
    wrong_zone["token"] = json!(token);
    wrong_zone["zone"] = json!("zone-b");
    let resp = cl.http.post(format!("{}/agent/v1/join", cl.urls[0])).json(&wrong_zone).send().expect("join");
    assert_eq!(resp.status().as_u16(), 400, "{}", resp.text().unwrap_or_default());
    let mut bad_address = agent_join.clone();
    bad_address["token"] = json!(token);
    bad_address["address"] = json!("http://127.0.0.1:1");
    let resp = cl.http.post(format!("{}/agent/v1/join", cl.urls[0])).json(&bad_address).send().expect("join");
    assert_eq!(resp.status().as_u16(), 400, "a plain-http agent address is refused");
    assert_eq!(cl.hosts(0).len(), 3);

    // A user's token means nothing to the agents' protocol, nor to an agent's API.
    let resp =
        cl.http.post(format!("{}/agent/v1/heartbeat", cl.urls[0])).bearer_auth(&cl.token).json(&hb).send().expect("hb");
    assert_eq!(resp.status().as_u16(), 401);
    // Refused heartbeats are in the audit log; accepted ones (every host's, every 3 s) are not.
    let (s, log) = cl.get(1, "/v1/system/audit-log?limit=200");
    assert_eq!(s, 200, "{log}");
    let beats: Vec<&Value> =
        log["items"].as_array().expect("items").iter().filter(|e| e["path"] == "/agent/v1/heartbeat").collect();
    assert!(beats.len() >= 4, "the refused heartbeats are audited: {beats:?}");
    assert!(beats.iter().all(|e| e["status"].as_u64().unwrap_or(0) >= 400), "{beats:?}");
    let h1_addr = std::fs::read_to_string(cl.dir.path().join("h1/agent.addr")).expect("agent.addr");
    let resp = cl
        .http
        .post(format!("https://{}/agent/v1/call", h1_addr.trim()))
        .bearer_auth(&cl.token)
        .json(&json!({"call": "host_info"}))
        .send()
        .expect("agent call");
    assert_eq!(resp.status().as_u16(), 401, "a tenant's or operator's token is refused by the agent API");

    // Instances through either controller spread over the hosts (most free memory first).
    let (s, v) = cl.post(0, "/v1/projects", json!({"name": "demo"}));
    assert_eq!(s, 201, "{v}");
    // What needs the all-in-one host's storage is refused by a controller, saying why.
    let (s, v) = cl.post(0, "/v1/volumes?project=demo", json!({"name": "data", "size_gib": 1}));
    assert_eq!(s, 409, "{v}");
    assert!(v["message"].as_str().unwrap_or("").contains("shared storage"), "{v}");
    let (s, v) = cl.post(0, "/v1/images?project=demo", json!({"name": "img", "source_instance": "vm0"}));
    assert_eq!(s, 409, "{v}");
    assert!(v["message"].as_str().unwrap_or("").contains("shared storage"), "{v}");

    for i in 0..6 {
        let (s, v) = cl.create(i % 2, &format!("vm{i}"), json!({}));
        assert_eq!(s, 202, "{v}");
    }
    let mut per_host = std::collections::BTreeMap::<String, usize>::new();
    let mut on_h2 = None;
    for i in 0..6 {
        let v = cl.wait_running(1, &format!("vm{i}"));
        if v["host"] == "h2" {
            on_h2 = Some(format!("vm{i}"));
        }
        *per_host.entry(v["host"].as_str().expect("host").to_string()).or_default() += 1;
    }
    let on_h2 = on_h2.expect("an instance on h2");
    assert_eq!(per_host.values().copied().collect::<Vec<_>>(), vec![2, 2, 2], "spread evenly: {per_host:?}");

    // A zone asked for is a filter.
    let (s, v) = cl.create(1, "in-b", json!({"zone": "zone-b"}));
    assert_eq!(s, 202, "{v}");
    assert_eq!(cl.wait_running(0, "in-b")["host"], "h3");
    let (s, v) = cl.create(1, "nowhere", json!({"zone": "zone-x"}));
    assert_eq!(s, 400, "{v}");

    // Cordon h3: zone-b has no other host, so a create there is refused, saying why.
    let (s, v) = cl.post(0, "/v1/hosts/h3/cordon", json!({}));
    assert_eq!((s, &v["state"]), (200, &json!("cordoned")), "{v}");
    let (s, v) = cl.create(1, "refused", json!({"zone": "zone-b"}));
    assert!(s == 507 || s == 409, "{s} {v}");
    assert!(v["message"].as_str().unwrap_or("").contains("cordoned"), "the refusal says why: {v}");
    let (s, v) = cl.post(1, "/v1/hosts/h3/uncordon", json!({}));
    assert_eq!((s, &v["state"]), (200, &json!("ready")), "{v}");

    // kill -9 of an agent: its host becomes unreachable within the deadline.
    let killed_at = Instant::now();
    cl.agents[1].kill9();
    wait_for("h2 unreachable", Duration::from_secs(UNREACHABLE_AFTER + 10), &|| cl.logs(), || {
        (cl.host_state(0, "h2").as_deref() == Some("unreachable")).then_some(())
    });
    assert!(killed_at.elapsed() <= Duration::from_secs(30), "{:?}", killed_at.elapsed());
    // Its instances show `unknown`, never a stale `running` (on both controllers).
    for c in 0..2 {
        wait_for("unknown", Duration::from_secs(10), &|| cl.logs(), || {
            let v = cl.instance(c, &on_h2);
            (v["state"] == "unknown").then_some(())
        });
    }
    assert!(cl.instance(0, &on_h2)["state_reason"].as_str().unwrap_or("").contains("last recorded state: running"));
    // New instances go to the hosts still there.
    let (s, v) = cl.create(0, "after-h2", json!({}));
    assert_eq!(s, 202, "{v}");
    assert_ne!(cl.wait_running(0, "after-h2")["host"], "h2");

    // kill -9 of a controller: the other one serves and does the background work (it takes the
    // lease over once it expired).
    cl.controllers[0].kill9();
    let (s, v) = cl.create(1, "after-c0", json!({}));
    assert_eq!(s, 202, "{v}");
    cl.wait_running(1, "after-c0");
    for a in cl.agents.iter_mut() {
        assert!(a.exited().is_none() || a.name == "h2", "agent {} exited:\n{}", a.name, a.log_tail());
    }
}

/// Placement groups over three hosts (one controller): anti-affinity puts three instances on
/// three hosts and refuses a fourth saying why; spread uses every host; pack one.
#[test]
fn placement_groups_over_three_hosts() {
    let mut cl = Cluster::start(1, fixture_image_cache());
    let (s, v) = cl.post(0, "/v1/zones", json!({"name": "zone-a"}));
    assert_eq!(s, 201, "{v}");
    let tokens: Vec<String> = (0..3).map(|_| cl.join_token("zone-a")).collect();
    for (i, token) in tokens.iter().enumerate() {
        cl.start_agent(&format!("h{}", i + 1), "zone-a", token);
    }
    wait_for("3 ready hosts", Duration::from_secs(60), &|| cl.logs(), || {
        let hosts = cl.hosts(0);
        (hosts.len() == 3 && hosts.iter().all(|h| h["state"] == "ready")).then_some(())
    });
    let (s, v) = cl.post(0, "/v1/projects", json!({"name": "demo"}));
    assert_eq!(s, 201, "{v}");
    for (name, policy) in [("aa", "anti-affinity"), ("sp", "spread"), ("pk", "pack")] {
        let (s, v) = cl.post(0, "/v1/placement-groups?project=demo", json!({"name": name, "policy": policy}));
        assert_eq!(s, 201, "{v}");
    }
    // The hosts of `n` instances created in `group`.
    let place = |group: &str, n: usize| -> Vec<String> {
        (0..n)
            .map(|i| {
                let (s, v) = cl.create(0, &format!("{group}{i}"), json!({"placement_group": group}));
                assert_eq!(s, 202, "{v}");
                assert_eq!(v["placement_group"], group, "{v}");
                v["host"].as_str().expect("the operator sees the host").to_string()
            })
            .collect()
    };
    let distinct = |hosts: &[String]| hosts.iter().collect::<std::collections::BTreeSet<_>>().len();

    let aa = place("aa", 3);
    assert_eq!(distinct(&aa), 3, "anti-affinity: one per host: {aa:?}");
    let (s, v) = cl.create(0, "aa3", json!({"placement_group": "aa"}));
    assert_eq!((s, &v["error_code"]), (507, &json!("InsufficientCapacity")), "{v}");
    let msg = v["message"].as_str().unwrap_or_default();
    assert!(
        msg.starts_with("placement group 'aa' (anti-affinity): every ready host already runs one of its 3 instances"),
        "the refusal says why: {msg}"
    );
    let (s, v) = cl.get(0, "/v1/instances/aa3?project=demo");
    assert_eq!(s, 404, "nothing was made: {v}");

    let sp = place("sp", 3);
    assert_eq!(distinct(&sp), 3, "spread: every host: {sp:?}");
    let pk = place("pk", 3);
    assert_eq!(distinct(&pk), 1, "pack: one host: {pk:?}");
    let (s, v) = cl.get(0, "/v1/placement-groups/pk?project=demo");
    assert_eq!((s, &v["instances"]), (200, &json!(3)), "{v}");
    for i in 0..3 {
        cl.wait_running(0, &format!("pk{i}"));
    }
}
