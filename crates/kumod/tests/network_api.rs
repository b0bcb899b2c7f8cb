//! Tenant networking through the API (sim driver): VPCs, subnets and IPAM, security groups,
//! SSH keys, floating IPs, and what instance views show of them.

mod common;

use common::{cloud, Cloud};
use serde_json::{json, Value};
use std::collections::HashSet;
use std::time::Duration;

const IMAGE: &str = common::FIXTURE_IMAGE;
const KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAABAgMEBQYHCAkKCwwNDg8QERITFBUWFxgZGhscHR4f me@laptop";

fn roomy() -> Cloud {
    cloud(&[
        "--host-vcpus",
        "256",
        "--host-memory-mib",
        "262144",
        "--host-disk-gib",
        "5000",
        "--public-ip-pool",
        "203.0.113.0/29",
    ])
}

#[track_caller]
fn ok(resp: (u16, Value), status: u16) -> Value {
    assert_eq!(resp.0, status, "{}", resp.1);
    resp.1
}

#[track_caller]
fn err(resp: (u16, Value), status: u16, code: &str) -> String {
    assert_eq!(resp.0, status, "{}", resp.1);
    assert_eq!(resp.1["error_code"], code, "{}", resp.1);
    resp.1["message"].as_str().unwrap_or_default().to_string()
}

fn instance(k: &Cloud, project: &str, body: Value) -> (u16, Value) {
    let mut b = json!({"image": IMAGE, "instance_type": "k1-nano"});
    b.as_object_mut().expect("object").extend(body.as_object().expect("object").clone());
    k.post(&format!("/v1/instances?project={project}"), b)
}

#[test]
fn every_project_has_a_default_network_and_instances_get_an_address_from_it() {
    let k = roomy();
    k.create_project("web");
    let vpcs = ok(k.get("/v1/vpcs?project=web"), 200);
    assert_eq!(vpcs["items"][0]["name"], "default", "{vpcs}");
    let subnet = ok(k.get("/v1/vpc-subnets/default?project=web&vpc=default"), 200);
    assert_eq!(subnet["gateway"], "10.0.0.1", "{subnet}");
    ok(k.get("/v1/security-groups/default?project=web"), 200);

    let v = ok(instance(&k, "web", json!({"name": "vm1"})), 202);
    let nics = v["network_interfaces"].as_array().expect("interfaces");
    assert_eq!(nics.len(), 1, "{v}");
    assert_eq!(nics[0]["ipv4"], "10.0.0.2", "the first address after network and gateway: {v}");
    assert_eq!((nics[0]["vpc"].as_str(), nics[0]["subnet"].as_str()), (Some("default"), Some("default")));
    assert!(nics[0]["mac"].as_str().is_some_and(|m| m.starts_with("02:")), "{v}");
    assert!(v["public_ip"].is_null(), "{v}");
    let listed = ok(k.get("/v1/instances?project=web"), 200);
    assert_eq!(listed["items"][0]["network_interfaces"], v["network_interfaces"]);
    let subnet = ok(k.get("/v1/vpc-subnets/default?project=web&vpc=default"), 200);
    assert_eq!(subnet["allocated"], 1, "{subnet}");
}

#[test]
fn subnets_must_fit_their_vpc_and_not_overlap_but_vpcs_may_share_ranges() {
    let k = roomy();
    k.create_project("web");
    ok(k.post("/v1/vpcs?project=web", json!({"name": "app", "ipv4_cidr": "10.10.0.0/16"})), 201);
    ok(k.post("/v1/vpcs?project=web", json!({"name": "other", "ipv4_cidr": "10.10.0.0/16"})), 201);
    let m =
        err(k.post("/v1/vpcs?project=web", json!({"name": "bad", "ipv4_cidr": "10.10.1.5/16"})), 400, "InvalidValue");
    assert!(m.contains("10.10.0.0/16"), "{m}");
    err(
        k.post("/v1/vpcs?project=web", json!({"name": "app", "ipv4_cidr": "10.11.0.0/16"})),
        409,
        "ObjectAlreadyExists",
    );

    ok(k.post("/v1/vpc-subnets?project=web&vpc=app", json!({"name": "web", "ipv4_cidr": "10.10.1.0/24"})), 201);
    let m = err(
        k.post("/v1/vpc-subnets?project=web&vpc=app", json!({"name": "web2", "ipv4_cidr": "10.10.1.128/25"})),
        409,
        "InvalidState",
    );
    assert!(m.contains("overlaps subnet 'web'"), "{m}");
    let m = err(
        k.post("/v1/vpc-subnets?project=web&vpc=app", json!({"name": "out", "ipv4_cidr": "10.20.1.0/24"})),
        400,
        "InvalidValue",
    );
    assert!(m.contains("not inside vpc 'app'"), "{m}");
    // The same range in another VPC is fine: they are isolated.
    ok(k.post("/v1/vpc-subnets?project=web&vpc=other", json!({"name": "web", "ipv4_cidr": "10.10.1.0/24"})), 201);

    let a = ok(instance(&k, "web", json!({"name": "a", "vpc": "app", "subnet": "web"})), 202);
    let b = ok(instance(&k, "web", json!({"name": "b", "vpc": "other"})), 202);
    assert_eq!(a["network_interfaces"][0]["ipv4"], "10.10.1.2");
    assert_eq!(b["network_interfaces"][0]["ipv4"], "10.10.1.2", "overlapping VPCs allocate independently");
    err(instance(&k, "web", json!({"name": "c", "vpc": "nope"})), 400, "InvalidValue");

    // A VPC with instances cannot go; once they are gone it can.
    let m = err(k.delete("/v1/vpcs/app?project=web"), 409, "InvalidState");
    assert!(m.contains("instance"), "{m}");
    ok(k.delete("/v1/instances/a?project=web"), 202);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while k.get("/v1/instances/a?project=web").0 != 404 {
        assert!(std::time::Instant::now() < deadline, "instance a was not deleted");
        std::thread::sleep(Duration::from_millis(50));
    }
    ok(k.delete("/v1/vpc-subnets/web?project=web&vpc=app"), 204);
    ok(k.delete("/v1/vpcs/app?project=web"), 204);
    err(k.get("/v1/vpcs/app?project=web"), 404, "NotFound");
}

#[test]
fn ipam_gives_50_concurrent_creates_distinct_addresses_and_exhaustion_names_the_subnet() {
    let k = roomy();
    k.create_project("web");
    ok(k.post("/v1/vpcs?project=web", json!({"name": "app", "ipv4_cidr": "10.10.0.0/16"})), 201);
    ok(k.post("/v1/vpc-subnets?project=web&vpc=app", json!({"name": "big", "ipv4_cidr": "10.10.0.0/26"})), 201);
    let results: Vec<(u16, Value)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..50)
            .map(|i| {
                let k = &k;
                s.spawn(move || instance(k, "web", json!({"name": format!("vm{i}"), "vpc": "app", "subnet": "big"})))
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("thread")).collect()
    });
    let mut ips = HashSet::new();
    for (s, v) in &results {
        assert_eq!(*s, 202, "{v}");
        let ip: std::net::Ipv4Addr = v["network_interfaces"][0]["ipv4"].as_str().expect("ip").parse().expect("ipv4");
        let last = ip.octets()[3];
        assert!((2..63).contains(&last) && ip.octets()[..3] == [10, 10, 0], "reserved or foreign address {ip}");
        assert!(ips.insert(ip), "duplicate address {ip}");
    }
    assert_eq!(ips.len(), 50);
    // And every one of them boots: a burst of creates larger than the store's read pool must not
    // starve the reconciler (each step once held a read connection while waiting for a second:
    // a deadlock until the pool's timeout, and the instances `failed`).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        let list = ok(k.get("/v1/instances?project=web&limit=1000"), 200);
        let items = list["items"].as_array().expect("items");
        assert!(items.iter().all(|i| i["state"] != "failed"), "an instance of the burst failed: {list}");
        if items.iter().filter(|i| i["state"] == "running").count() == 50 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "not all 50 running within 120 s: {list}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }

    // A /29 has 5 assignable addresses; the 6th create fails, naming the subnet, and leaves nothing.
    ok(k.post("/v1/vpc-subnets?project=web&vpc=app", json!({"name": "tiny", "ipv4_cidr": "10.10.1.0/29"})), 201);
    for i in 0..5 {
        ok(instance(&k, "web", json!({"name": format!("t{i}"), "vpc": "app", "subnet": "tiny"})), 202);
    }
    let m =
        err(instance(&k, "web", json!({"name": "t5", "vpc": "app", "subnet": "tiny"})), 507, "InsufficientCapacity");
    assert!(m.contains("subnet 'tiny'") && m.contains("10.10.1.0/29"), "{m}");
    err(k.get("/v1/instances/t5?project=web"), 404, "NotFound");
}

#[test]
fn security_group_rules_are_replaced_as_a_whole_and_validated() {
    let k = roomy();
    k.create_project("web");
    ok(k.post("/v1/security-groups?project=web", json!({"name": "web"})), 201);
    let rules = json!({"rules": [
        {"direction": "ingress", "protocol": "tcp", "port_range": "80", "source": "0.0.0.0/0"},
        {"direction": "ingress", "protocol": "tcp", "port_range": "8000-8080", "source": "default"},
    ]});
    let put = ok(k.send_put("/v1/security-groups/web/rules?project=web", rules.clone()), 200);
    assert_eq!(put, rules);
    assert_eq!(ok(k.get("/v1/security-groups/web/rules?project=web"), 200), rules);
    assert_eq!(ok(k.get("/v1/security-groups/web?project=web"), 200)["rule_count"], 2);

    let bad =
        json!({"rules": [{"direction": "ingress", "protocol": "tcp", "port_range": "90-80", "source": "0.0.0.0/0"}]});
    let m = err(k.send_put("/v1/security-groups/web/rules?project=web", bad), 400, "InvalidValue");
    assert!(m.contains("rules[0]"), "{m}");
    let missing = json!({"rules": [{"direction": "ingress", "protocol": "udp", "source": "nosuch"}]});
    let m = err(k.send_put("/v1/security-groups/web/rules?project=web", missing), 400, "InvalidValue");
    assert!(m.contains("'nosuch'"), "{m}");
    assert_eq!(ok(k.get("/v1/security-groups/web/rules?project=web"), 200), rules, "a refused PUT changes nothing");

    ok(instance(&k, "web", json!({"name": "vm1", "security_groups": ["web"]})), 202);
    err(k.delete("/v1/security-groups/web?project=web"), 409, "InvalidState");
    err(instance(&k, "web", json!({"name": "vm2", "security_groups": ["nope"]})), 400, "InvalidValue");
}

#[test]
fn ssh_keys_and_floating_ips() {
    let k = roomy();
    k.create_project("web");
    let key = ok(k.post("/v1/ssh-keys?project=web", json!({"name": "laptop", "public_key": KEY})), 201);
    assert_eq!(key["public_key"], KEY);
    err(k.post("/v1/ssh-keys?project=web", json!({"name": "bad", "public_key": "not a key"})), 400, "InvalidValue");
    ok(instance(&k, "web", json!({"name": "vm1", "ssh_keys": ["laptop"]})), 202);
    err(instance(&k, "web", json!({"name": "vm2", "ssh_keys": ["nope"]})), 400, "InvalidValue");

    let f = ok(k.post("/v1/floating-ips?project=web", json!({"name": "ip1"})), 201);
    assert_eq!(f["ip"], "203.0.113.2", "the pool's first address is the uplink's: {f}");
    let f = ok(k.post("/v1/floating-ips/ip1/attach?project=web", json!({"instance": "vm1"})), 200);
    assert_eq!(f["instance"], "vm1");
    assert_eq!(ok(k.get("/v1/instances/vm1?project=web"), 200)["public_ip"], "203.0.113.2");
    ok(k.post("/v1/floating-ips?project=web", json!({"name": "ip2"})), 201);
    err(k.post("/v1/floating-ips/ip2/attach?project=web", json!({"instance": "vm1"})), 409, "InvalidState");
    let f = ok(k.post_empty("/v1/floating-ips/ip1/detach?project=web"), 200);
    assert!(f["instance"].is_null(), "{f}");
    assert!(ok(k.get("/v1/instances/vm1?project=web"), 200)["public_ip"].is_null());

    // The pool (a /29: addresses .2 to .6) runs out with a clear error; the quota counts them.
    for i in 3..=5 {
        ok(k.post("/v1/floating-ips?project=web", json!({"name": format!("ip{i}")})), 201);
    }
    let m = err(k.post("/v1/floating-ips?project=web", json!({"name": "ip6"})), 507, "InsufficientCapacity");
    assert!(m.contains("203.0.113.0/29"), "{m}");
    let q = ok(k.get("/v1/projects/web/quotas"), 200);
    assert_eq!(q["used"]["floating_ips"], 5, "{q}");
    ok(k.delete("/v1/floating-ips/ip5?project=web"), 204);
    assert_eq!(ok(k.get("/v1/projects/web/quotas"), 200)["used"]["floating_ips"], 4);

    // Metering: every floating IP held is billed per hour, from its creation to its release.
    ok(k.send_put("/v1/system/prices", json!({"kind": "floating_ip", "unit_price": "0.005"})), 200);
    std::thread::sleep(Duration::from_millis(1100));
    let usage = ok(k.get("/v1/projects/web/usage"), 200);
    let fips: Vec<&Value> =
        usage["items"].as_array().expect("items").iter().filter(|l| l["resource_type"] == "floating_ip").collect();
    let names: HashSet<&str> = fips.iter().filter_map(|l| l["resource"].as_str()).collect();
    assert_eq!(names.len(), 5, "ip1..ip5 (ip5 released, still billed for its time): {usage}");
    assert!(fips.iter().all(|l| l["price_kind"] == "floating_ip"), "{usage}");
    let held: i64 = fips.iter().filter_map(|l| l["quantity"].as_i64()).sum();
    assert!(held >= 4, "four IPs held for over a second each: {usage}");

    // A project holding a floating IP cannot be deleted (it would stay allocated); released, it can.
    k.create_project("solo");
    ok(k.delete("/v1/floating-ips/ip4?project=web"), 204);
    ok(k.post("/v1/floating-ips?project=solo", json!({"name": "only"})), 201);
    let m = err(k.delete("/v1/projects/solo"), 409, "InvalidState");
    assert!(m.contains("1 instance(s), image(s) or floating IP(s)"), "{m}");
    ok(k.delete("/v1/floating-ips/only?project=solo"), 204);
    ok(k.delete("/v1/projects/solo"), 204);
}

fn cli(k: &Cloud, args: &[&str]) -> String {
    let out = std::process::Command::new(common::kumo_binary())
        .args(args)
        .env("KUMO_URL", &k.url)
        .env("KUMO_TOKEN", &k.token)
        .env("KUMO_CONFIG", k.data_dir().join("cli-config.json"))
        .output()
        .expect("run kumo (cargo build --workspace first)");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "kumo {args:?} failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    stdout
}

#[test]
fn the_issue_flow_through_the_cli() {
    let k = roomy();
    k.create_project("demo");
    let p = ["--project", "demo"];
    let run = |args: &[&str]| cli(&k, &[args, &p[..]].concat());
    run(&["vpc", "create", "app", "--cidr", "10.10.0.0/16"]);
    run(&["subnet", "create", "web", "--vpc", "app", "--cidr", "10.10.1.0/24"]);
    let keyfile = k.data_dir().join("id.pub");
    std::fs::write(&keyfile, format!("{KEY}\n")).expect("key file");
    run(&["ssh-key", "import", "laptop", "--public-key-file", keyfile.to_str().expect("path")]);
    run(&["security-group", "create", "web"]);
    run(&[
        "security-group",
        "rule",
        "add",
        "web",
        "--ingress",
        "--protocol",
        "tcp",
        "--port",
        "80",
        "--source",
        "0.0.0.0/0",
    ]);
    let rules = run(&["security-group", "rule", "list", "web"]);
    assert!(rules.contains("ingress") && rules.contains("80") && rules.contains("0.0.0.0/0"), "{rules}");
    let out = cli(
        &k,
        &[
            "--output",
            "json",
            "instance",
            "create",
            "web1",
            "--project",
            "demo",
            "--image",
            IMAGE,
            "--type",
            "k1-nano",
            "--vpc",
            "app",
            "--subnet",
            "web",
            "--security-group",
            "web",
            "--ssh-key",
            "laptop",
        ],
    );
    let v: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(v["network_interfaces"][0]["ipv4"], "10.10.1.2", "{v}");
    run(&["floating-ip", "create", "ip1"]);
    run(&["floating-ip", "attach", "ip1", "--instance", "web1"]);
    let view = cli(&k, &["--output", "json", "instance", "view", "web1", "--project", "demo"]);
    let v: Value = serde_json::from_str(&view).expect("json");
    assert_eq!(v["public_ip"], "203.0.113.2", "{v}");
    let subnets = run(&["subnet", "list", "--vpc", "app"]);
    assert!(subnets.contains("10.10.1.0/24") && subnets.contains("1/253"), "{subnets}");
    run(&["security-group", "rule", "remove", "web", "--ingress", "--protocol", "tcp", "--port", "80"]);
    assert!(!run(&["security-group", "rule", "list", "web"]).contains("80"));
    run(&["floating-ip", "detach", "ip1"]);
    run(&["floating-ip", "delete", "ip1"]);
}

/// Issue 12: `kumo instance ssh` logs in as the default user an import gave the image
/// (`kumo image import --default-user`), and asks for `-l USER` when the image names none — checked
/// here on the sim driver with `--print`, not with another Debian boot (debian_e2e.rs boots one).
#[test]
fn instance_ssh_uses_the_default_user_given_at_import_or_asks_for_one() {
    let k = roomy();
    k.create_project("demo");
    let disk = k.images.path().join(IMAGE).join("disk.qcow2");
    let disk = disk.to_str().expect("path");
    let import = ["image", "import", disk, "--project", "demo", "--name"];
    cli(
        &k,
        &[&import[..], &["mydebian", "--os-family", "debian", "--os-version", "12", "--default-user", "debian"]]
            .concat(),
    );
    cli(&k, &[&import[..], &["plain"]].concat());
    let listed = cli(&k, &["image", "list", "--project", "demo"]);
    let row = listed.lines().find(|l| l.starts_with("mydebian")).unwrap_or_else(|| panic!("no mydebian: {listed}"));
    assert!(row.contains("debian 12") && row.contains(" debian "), "{listed}");

    let mut ips = Vec::new();
    for (vm, image, ip) in [("vm1", "mydebian", "ip1"), ("vm2", "plain", "ip2")] {
        ok(instance(&k, "demo", json!({"name": vm, "image": image})), 202);
        ok(k.post("/v1/floating-ips?project=demo", json!({"name": ip})), 201);
        let f = ok(k.post(&format!("/v1/floating-ips/{ip}/attach?project=demo"), json!({"instance": vm})), 200);
        ips.push(f["ip"].as_str().expect("ip").to_string());
    }
    let ssh = |args: &[&str]| {
        std::process::Command::new(common::kumo_binary())
            .args([&["instance", "ssh"][..], args, &["--project", "demo", "--print"]].concat())
            .env("KUMO_URL", &k.url)
            .env("KUMO_TOKEN", &k.token)
            .env("KUMO_CONFIG", k.data_dir().join("cli-config.json"))
            .env_remove("KUMO_NETNS")
            .output()
            .expect("run kumo")
    };
    let text = |o: &std::process::Output| {
        format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
    };
    let out = ssh(&["vm1"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("ssh -o StrictHostKeyChecking=accept-new -l debian {}", ips[0]),
        "as the default user given at import"
    );
    let out = ssh(&["vm2"]);
    assert!(!out.status.success(), "an image without a default user: {}", text(&out));
    assert!(text(&out).contains("image 'plain' names no default user; give one with -l USER"), "{}", text(&out));
    let out = ssh(&["vm2", "-l", "debian"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains(&format!("-l debian {}", ips[1])), "{}", text(&out));
}

/// VPCs count against the `vpcs` quota (the default VPC too), are refused with 403 in the usual
/// shape when it is full, and give back their quota, VNI and conntrack zone when deleted: many
/// creates and deletes never climb the VNI (and zone) space.
#[test]
fn vpcs_are_bounded_by_their_quota_and_deleted_ones_give_back_their_vni() {
    let k = roomy();
    k.create_project("web");
    let q = ok(k.get("/v1/projects/web/quotas"), 200);
    assert_eq!((q["used"]["vpcs"].as_i64(), q["limits"]["vpcs"].as_i64()), (Some(1), Some(10)), "{q}");
    ok(k.send_put("/v1/projects/web/quotas", json!({"vpcs": 2})), 200);
    let vpc = |name: &str| k.post("/v1/vpcs?project=web", json!({"name": name, "ipv4_cidr": "10.10.0.0/16"}));
    let first = ok(vpc("a"), 201);
    let m = err(vpc("b"), 403, "QuotaExceeded");
    assert!(m.contains("quota exceeded in project 'web': vpcs 2 of 2 used, this needs 1 more"), "{m}");
    assert_eq!(k.get("/v1/vpcs/b?project=web").0, 404, "nothing made");

    // 100 creates and deletes: the same VNI comes back each time.
    let vni = first["vni"].as_i64().expect("vni");
    ok(k.delete("/v1/vpcs/a?project=web"), 204);
    for i in 0..100 {
        let v = ok(vpc(&format!("c{i}")), 201);
        assert_eq!(v["vni"].as_i64(), Some(vni), "a deleted VPC's VNI is reused: {v}");
        ok(k.delete(&format!("/v1/vpcs/c{i}?project=web")), 204);
    }
    let q = ok(k.get("/v1/projects/web/quotas"), 200);
    assert_eq!(q["used"]["vpcs"], 1, "{q}");
    // Unlimited again with `null`.
    ok(k.send_put("/v1/projects/web/quotas", json!({"vpcs": null})), 200);
    ok(vpc("b"), 201);
    ok(vpc("c"), 201);
}
