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

    // Joins are in the audit log (those refused too).
    let (s, v) = cl.get(1, "/v1/system/audit-log?operation=host_join&limit=1000");
    assert_eq!(s, 200, "{v}");
    let joins = v["items"].as_array().expect("items");
    let ok: Vec<&str> = joins.iter().filter(|e| e["result"] == "ok").filter_map(|e| e["actor"].as_str()).collect();
    assert_eq!(ok.len(), 3, "{v}");
    assert!(ok.contains(&"agent joining as host 'h1'"), "{ok:?}");
    let refused = joins.iter().filter(|e| e["status"] == 401 || e["status"] == 400).count();
    assert_eq!(refused, 3, "the reused token, the wrong zone, the plain-http address: {v}");

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
    assert!(beats.iter().all(|e| e["operation"] == "host_heartbeat"), "{beats:?}");
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

    // Removing a host: refused while instances are on it, saying which; once they are gone it
    // leaves the cloud, and its agent's credential no longer works.
    let gone = aa[0].clone();
    let (s, v) = cl.call(0, reqwest::Method::DELETE, &format!("/v1/hosts/{gone}"), None);
    assert_eq!((s, &v["error_code"]), (409, &json!("InvalidState")), "{v}");
    assert!(v["message"].as_str().unwrap_or("").contains("aa0"), "the refusal names what is on it: {v}");
    assert_eq!(cl.hosts(0).len(), 3, "nothing was removed");
    let on_gone: Vec<String> = ["aa", "sp", "pk"]
        .iter()
        .flat_map(|g| (0..3).map(move |i| format!("{g}{i}")))
        .filter(|n| cl.instance(0, n)["host"] == gone.as_str())
        .collect();
    for n in &on_gone {
        let (s, v) = cl.call(0, reqwest::Method::DELETE, &format!("/v1/instances/{n}?project=demo"), None);
        assert_eq!(s, 202, "{v}");
    }
    wait_for("the host emptied", Duration::from_secs(30), &|| cl.logs(), || {
        on_gone.iter().all(|n| cl.get(0, &format!("/v1/instances/{n}?project=demo")).0 == 404).then_some(())
    });
    let (s, v) = cl.call(0, reqwest::Method::DELETE, &format!("/v1/hosts/{gone}"), None);
    assert_eq!(s, 204, "{v}");
    let hosts = cl.hosts(0);
    assert!(hosts.len() == 2 && hosts.iter().all(|h| h["name"] != gone.as_str()), "{hosts:?}");
    let (s, _) = cl.get(0, &format!("/v1/hosts/{gone}"));
    assert_eq!(s, 404);
    let i = gone.trim_start_matches('h').parse::<usize>().expect("host index") - 1;
    wait_for("its heartbeats refused", Duration::from_secs(15), &|| cl.logs(), || {
        cl.agents[i].log_tail().contains("not a host credential").then_some(())
    });
    let (s, v) = cl.create(0, "after-removal", json!({}));
    assert_eq!(s, 202, "{v}");
    assert_ne!(v["host"], gone.as_str());

    // An agent stopped cleanly (SIGTERM) says so: its host is `down` at once (not `unreachable`
    // after the deadline), its instances `unknown`; started again, it is `ready` and they show
    // their state again.
    let i = (0..cl.agents.len()).find(|&i| cl.agents[i].name != gone).expect("another host");
    let name = cl.agents[i].name.clone();
    let on_it: Vec<String> = ["aa0", "aa1", "aa2", "sp0", "sp1", "sp2", "pk0", "pk1", "pk2", "after-removal"]
        .iter()
        .filter(|n| cl.get(0, &format!("/v1/instances/{n}?project=demo")).1["host"] == name.as_str())
        .map(|n| n.to_string())
        .collect();
    assert!(!on_it.is_empty(), "instances on {name}");
    let stopped_at = Instant::now();
    cl.agents[i].signal(libc::SIGTERM);
    let deadline = Instant::now() + Duration::from_secs(15);
    while cl.agents[i].exited().is_none() {
        assert!(Instant::now() < deadline, "the agent did not stop on SIGTERM:\n{}", cl.agents[i].log_tail());
        std::thread::sleep(Duration::from_millis(100));
    }
    wait_for("the host down", Duration::from_secs(10), &|| cl.logs(), || {
        (cl.host_state(0, &name).as_deref() == Some("down")).then_some(())
    });
    assert!(stopped_at.elapsed() < Duration::from_secs(UNREACHABLE_AFTER), "down before any deadline");
    wait_for("its instances unknown", Duration::from_secs(10), &|| cl.logs(), || {
        on_it.iter().all(|n| cl.instance(0, n)["state"] == "unknown").then_some(())
    });
    let (s, v) = cl.get(0, "/v1/system/audit-log?operation=host_leave&limit=10");
    assert!(s == 200 && v["items"][0]["status"] == 204, "the leave is audited: {v}");
    cl.restart_agent(i);
    wait_for("the host ready again", Duration::from_secs(30), &|| cl.logs(), || {
        (cl.host_state(0, &name).as_deref() == Some("ready")).then_some(())
    });
    // Back, they show what the host really has (a sim agent's guests lived in its memory: stopped).
    wait_for("its instances known again", Duration::from_secs(30), &|| cl.logs(), || {
        on_it.iter().all(|n| cl.instance(0, n)["state"] == "stopped").then_some(())
    });
}

/// The `kumo` CLI against controller `c`, as the operator (stdout and stderr captured).
fn kumo(cl: &Cluster, c: usize, args: &[&str]) -> std::process::Command {
    let mut cmd = std::process::Command::new(common::kumo_binary());
    cmd.args(args)
        .env("KUMO_URL", &cl.urls[c])
        .env("KUMO_TOKEN", &cl.token)
        .env("KUMO_FINGERPRINT", &cl.fingerprint)
        .env("HOME", cl.dir.path())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    cmd
}

/// What must not change when an instance moves: its id, address and MAC.
fn identity(v: &Value) -> (Value, Value, Value) {
    let nic = &v["network_interfaces"][0];
    assert!(nic["ipv4"].is_string(), "{v}");
    (v["id"].clone(), nic["ipv4"].clone(), nic["mac"].clone())
}

/// Every instance is on exactly the host the API says, on no other (asked of every agent), once
/// the moves' clean-up (after their commit) is done.
fn each_on_its_host_only(cl: &Cluster, c: usize, names: &[String]) {
    let misplaced = || -> Vec<String> {
        let lists: Vec<(String, Vec<String>)> =
            ["h1", "h2", "h3"].iter().map(|h| (h.to_string(), cl.agent_guests(h))).collect();
        let mut bad = Vec::new();
        for n in names {
            let v = cl.instance(c, n);
            let id = v["id"].as_str().expect("id");
            let on: Vec<&str> =
                lists.iter().filter(|(_, ids)| ids.iter().any(|i| i == id)).map(|(h, _)| h.as_str()).collect();
            if on != vec![v["host"].as_str().expect("host")] {
                bad.push(format!("{n} (host {}) is on {on:?}", v["host"]));
            }
        }
        bad
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let bad = misplaced();
        if bad.is_empty() {
            return;
        }
        assert!(Instant::now() < deadline, "instances not on exactly their host: {bad:?}\n{}", cl.logs());
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// Cold migration and drain over three sim hosts and two controllers: moves with and without a
/// host asked for, of a running and of a stopped instance; refusals that change nothing; a drain
/// that empties a host; kill -9 of the controller doing the work in the middle of a move.
#[test]
fn instances_move_between_hosts_and_a_host_drains() {
    let mut cl = Cluster::start(2, fixture_image_cache());
    let (s, v) = cl.post(0, "/v1/zones", json!({"name": "zone-a"}));
    assert_eq!(s, 201, "{v}");
    for i in 1..=3 {
        let token = cl.join_token("zone-a");
        // Every sim operation takes 300 ms, so a move lasts long enough to kill a controller in it.
        let extra = [
            "--driver",
            "sim",
            "--image-cache",
            "/nonexistent",
            "--host-vcpus",
            "4",
            "--host-memory-mib",
            "8192",
            "--sim-latency-ms",
            "300",
        ];
        cl.start_agent_with(&format!("h{i}"), "zone-a", &token, &extra.map(String::from));
    }
    wait_for("3 ready hosts", Duration::from_secs(60), &|| cl.logs(), || {
        let hosts = cl.hosts(0);
        (hosts.len() == 3 && hosts.iter().all(|h| h["state"] == "ready")).then_some(())
    });
    let (s, v) = cl.post(0, "/v1/projects", json!({"name": "demo"}));
    assert_eq!(s, 201, "{v}");
    let names: Vec<String> = (0..6).map(|i| format!("vm{i}")).collect();
    for n in &names {
        let (s, v) = cl.create(0, n, json!({}));
        assert_eq!(s, 202, "{v}");
    }
    let mut before = std::collections::BTreeMap::new();
    for n in &names {
        let v = cl.wait_running(0, n);
        before.insert(n.clone(), identity(&v));
    }
    let on =
        |host: &str| -> Vec<String> { names.iter().filter(|n| cl.instance(0, n)["host"] == host).cloned().collect() };
    let migrate =
        |c: usize, name: &str, body: Value| cl.post(c, &format!("/v1/instances/{name}/migrate?project=demo"), body);

    // Refusals: a clear 4xx, and nothing changes.
    let a = on("h1")[0].clone();
    for (body, status, says) in [
        (json!({"host": "nope"}), 400, "does not exist"),
        (json!({"host": "h1"}), 409, "already on host 'h1'"),
        (json!({"host": 5}), 400, ""),
        (json!({"hots": "h2"}), 400, ""),
    ] {
        let (s, v) = migrate(1, &a, body.clone());
        assert_eq!(s, status, "{body}: {v}");
        assert!(v["message"].as_str().unwrap_or("").contains(says), "{body}: {v}");
    }
    let (s, v) = cl.post(0, "/v1/hosts/h3/cordon", json!({}));
    assert_eq!(s, 200, "{v}");
    let (s, v) = migrate(0, &a, json!({"host": "h3"}));
    assert_eq!(s, 409, "{v}");
    assert!(v["message"].as_str().unwrap_or("").contains("cordoned"), "{v}");
    let (s, v) = cl.post(0, "/v1/hosts/h3/uncordon", json!({}));
    assert_eq!(s, 200, "{v}");
    let (s, v) = migrate(0, "no-such-vm", json!({}));
    assert_eq!(s, 404, "{v}");
    let (s, v) = cl.post(0, "/v1/hosts/no-such-host/drain", json!({}));
    assert_eq!(s, 404, "{v}");
    let v = cl.instance(0, &a);
    assert_eq!((&v["state"], &v["host"]), (&json!("running"), &json!("h1")), "nothing changed: {v}");
    let used = |h: &str| cl.host(0, h)["vcpus_used"].as_i64().expect("vcpus_used");
    let used_before: Vec<i64> = ["h1", "h2", "h3"].iter().map(|h| used(h)).collect();

    // A running instance to the host asked for, with the CLI: it shows `migrating` (a second move
    // meanwhile is refused), then runs there.
    let mut cli =
        kumo(&cl, 1, &["instance", "migrate", &a, "--host", "h2", "--project", "demo", "--wait", "--timeout", "60"])
            .spawn()
            .expect("kumo");
    let v = wait_for("migrating", Duration::from_secs(10), &|| cl.logs(), || {
        let v = cl.instance(0, &a);
        (v["state"] == "migrating").then_some(v)
    });
    assert!(v["state_reason"].as_str().unwrap_or("").contains("to host 'h2'"), "{v}");
    let (s, v) = migrate(1, &a, json!({}));
    assert_eq!(s, 409, "a second move while it moves: {v}");
    let status = cli.wait().expect("kumo");
    assert!(status.success(), "kumo instance migrate --wait failed\n{}", cl.logs());
    let v = cl.instance(1, &a);
    assert_eq!((&v["state"], &v["host"]), (&json!("running"), &json!("h2")), "{v}");
    assert_eq!(identity(&v), before[&a], "same id, IP and MAC");
    assert_eq!(used("h1"), used_before[0] - 1, "its capacity left h1");
    assert_eq!(used("h2"), used_before[1] + 1, "and is reserved on h2");

    // A stopped instance, the scheduler choosing: it stays stopped, elsewhere.
    let b = on("h3")[0].clone();
    let (s, v) = cl.post(0, &format!("/v1/instances/{b}/stop?project=demo"), json!({}));
    assert_eq!(s, 202, "{v}");
    wait_for("stopped", Duration::from_secs(30), &|| cl.logs(), || {
        (cl.instance(0, &b)["state"] == "stopped").then_some(())
    });
    let (s, v) = migrate(1, &b, json!({}));
    assert_eq!(s, 202, "{v}");
    let v = wait_for("moved and stopped", Duration::from_secs(30), &|| cl.logs(), || {
        let v = cl.instance(0, &b);
        (v["state"] == "stopped" && v["host"] != "h3").then_some(v)
    });
    assert!(v["state_reason"].as_str().unwrap_or("").contains("moved from host 'h3'"), "{v}");
    assert_eq!(identity(&v), before[&b]);
    each_on_its_host_only(&cl, 0, &names);

    // Drain h1: every instance moves off it, one at a time; the host ends empty.
    let left_on_h1 = on("h1");
    assert!(!left_on_h1.is_empty(), "something to drain");
    let out = kumo(&cl, 1, &["host", "drain", "h1", "--wait", "--timeout", "90"]).output().expect("kumo");
    let progress = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "kumo host drain --wait: {progress}\n{}", cl.logs());
    let lines: Vec<&str> = progress.lines().collect();
    let first = format!("host h1: drain draining: 0 moved, {} remaining", left_on_h1.len());
    assert!(lines.first().is_some_and(|l| l.starts_with(&first)), "progress lines: {progress}");
    let last = format!("host h1: drain done: {} moved, 0 remaining", left_on_h1.len());
    assert_eq!(lines.last().copied(), Some(last.as_str()), "progress lines: {progress}");
    let h1 = cl.host(0, "h1");
    assert_eq!((&h1["state"], &h1["drain"]["state"]), (&json!("cordoned"), &json!("done")), "{h1}");
    assert_eq!((h1["drain"]["remaining"].as_i64(), h1["vcpus_used"].as_i64()), (Some(0), Some(0)), "{h1}");
    assert_eq!(h1["drain"]["moved"].as_i64(), Some(left_on_h1.len() as i64), "{h1}");
    assert!(cl.agent_guests("h1").is_empty(), "nothing is left on h1");
    for n in &names {
        let v = if *n == b { cl.instance(0, n) } else { cl.wait_running(0, n) };
        assert_ne!(v["host"], "h1", "{v}");
        assert_eq!(identity(&v), before[n], "{n} kept its id, IP and MAC");
    }
    each_on_its_host_only(&cl, 1, &names);

    // kill -9 of the controller doing the background work in the middle of a move: the other one
    // takes the work over, and the move finishes or rolls back — the instance on one host only.
    let (s, v) = cl.post(0, "/v1/hosts/h1/uncordon", json!({}));
    assert_eq!((s, &v["drain"]), (200, &Value::Null), "uncordoning ends the drain: {v}");
    let holder = (0..2)
        .rfind(|&c| {
            let log = std::fs::read_to_string(cl.controllers[c].dir.join("kumod.log")).unwrap_or_default();
            let took = log.rfind("now does the background work");
            took.is_some() && took > log.rfind("no longer does the background work")
        })
        .expect("a controller holds the lease");
    let other = 1 - holder;
    let c = names.iter().find(|n| **n != b).expect("a running instance").clone();
    let from = cl.instance(other, &c)["host"].clone();
    let (s, v) = migrate(other, &c, json!({"host": "h1"}));
    assert_eq!(s, 202, "{v}");
    cl.controllers[holder].kill9();
    assert_eq!(cl.instance(other, &c)["state"], "migrating", "killed in the middle of the move");
    let v = wait_for("the move finished or rolled back", Duration::from_secs(60), &|| cl.logs(), || {
        let v = cl.instance(other, &c);
        (v["state"] == "running").then_some(v)
    });
    assert!(v["host"] == "h1" || v["host"] == from, "{v}");
    assert_eq!(identity(&v), before[&c]);
    wait_for("no copy left behind", Duration::from_secs(30), &|| cl.logs(), || {
        let lists: Vec<Vec<String>> = ["h1", "h2", "h3"].iter().map(|h| cl.agent_guests(h)).collect();
        let id = v["id"].as_str().expect("id").to_string();
        (lists.iter().filter(|l| l.contains(&id)).count() == 1).then_some(())
    });
    each_on_its_host_only(&cl, other, &names);
}
