//! Tenant networking end to end on real QEMU guests, inside a network namespace this test creates
//! (`kumod --host-netns`) and removes: DHCP gives guests their IPAM address, two guests of one
//! VPC reach each other (busybox httpd + wget from user-data, results on the serial console), a
//! guest of another VPC with the same CIDR cannot, and each guest's metadata is its own.

mod common;

use common::{become_subreaper, image_cache, qemu_prerequisites, Kumod, Netns};
use serde_json::{json, Value};
use std::process::Command;
use std::time::{Duration, Instant};

const BOOT: Duration = Duration::from_secs(240);

fn wait_serial(k: &Kumod, project: &str, name: &str, needle: &str) -> String {
    let deadline = Instant::now() + BOOT;
    loop {
        let log = k.text(&format!("/v1/instances/{name}/serial-console?project={project}"));
        if log.contains(needle) {
            return log;
        }
        if Instant::now() > deadline {
            let tail: Vec<&str> = log.lines().collect();
            panic!(
                "serial console of {name} did not show '{needle}' within {BOOT:?}; last 40 lines:\n{}\nkumod log:\n{}",
                tail[tail.len().saturating_sub(40)..].join("\n"),
                k.log_tail(40)
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[track_caller]
fn ok(resp: (u16, Value), status: u16) -> Value {
    assert_eq!(resp.0, status, "{}", resp.1);
    resp.1
}

fn create(k: &Kumod, name: &str, vpc: &str, user_data: &str) -> Value {
    ok(
        k.post(
            "/v1/instances?project=net",
            json!({"name": name, "image": "tiny", "instance_type": "k1-nano", "vpc": vpc, "user_data": user_data,
                   "ssh_keys": ["laptop"]}),
        ),
        202,
    )
}

#[test]
fn guests_of_a_vpc_reach_each_other_and_no_one_else_and_read_only_their_metadata() {
    if !qemu_prerequisites() {
        return;
    }
    become_subreaper();
    let ns = Netns::new("net");
    let k = Kumod::start(&[
        "--driver",
        "qemu",
        "--image-cache",
        image_cache(),
        "--stop-timeout",
        "5",
        "--host-netns",
        &ns.0,
        "--public-ip-pool",
        "203.0.113.0/28",
        "--metrics-interval",
        "1",
    ]);
    k.create_project("net");
    let key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAABAgMEBQYHCAkKCwwNDg8QERITFBUWFxgZGhscHR4f me@laptop";
    ok(k.post("/v1/ssh-keys?project=net", json!({"name": "laptop", "public_key": key})), 201);
    for vpc in ["app", "other"] {
        ok(k.post("/v1/vpcs?project=net", json!({"name": vpc, "ipv4_cidr": "10.10.0.0/16"})), 201);
        let url = format!("/v1/vpc-subnets?project=net&vpc={vpc}");
        ok(k.post(&url, json!({"name": "web", "ipv4_cidr": "10.10.1.0/24"})), 201);
    }
    // cli gets .2, srv .3; in the other VPC, spy gets .2 and looks for .3 (which its VPC lacks).
    let fetch = |tag: &str, tries: u32| {
        format!(
            "ok=0; i=0; while [ $i -lt {tries} ]; do if timeout 3 wget -q -O /tmp/page http://10.10.1.3/; then \
             echo \"{tag}: got $(cat /tmp/page)\"; ok=1; break; fi; i=$((i+1)); sleep 1; done; \
             [ $ok = 1 ] || echo \"{tag}: unreachable\"\n"
        )
    };
    // After its fetch, cli takes srv's address and asks the metadata service: anti-spoofing
    // drops it, so it can never read srv's data.
    let spoof = "ip addr flush dev eth0; ip addr add 10.10.1.3/24 dev eth0; ip route add default via 10.10.1.1; \
        if timeout 3 wget -q -O /tmp/md http://169.254.169.254/latest/meta-data/instance-id; \
        then echo \"spoof: leaked $(cat /tmp/md)\"; else echo 'spoof: blocked'; fi\n";
    let cli = create(&k, "cli", "app", &format!("{}{spoof}", fetch("fetch", 150)));
    let srv = create(
        &k,
        "srv",
        "app",
        "mkdir -p /www && echo kumo-page-ok > /www/index.html && httpd -p 80 -h /www && echo srv-listening\n",
    );
    let spy = create(&k, "spy", "other", &fetch("spy", 20));
    assert_eq!(cli["network_interfaces"][0]["ipv4"], "10.10.1.2");
    assert_eq!(srv["network_interfaces"][0]["ipv4"], "10.10.1.3");
    assert_eq!(spy["network_interfaces"][0]["ipv4"], "10.10.1.2");

    // DHCP delivered the IPAM address, and the metadata service answered with the guest's own id.
    for (name, v) in [("cli", &cli), ("srv", &srv), ("spy", &spy)] {
        let ip = v["network_interfaces"][0]["ipv4"].as_str().expect("ip");
        wait_serial(&k, "net", name, &format!("kumo-guest: network eth0 {ip}"));
        let id = v["id"].as_str().expect("id");
        wait_serial(&k, "net", name, &format!("kumo-guest: metadata instance-id {id}"));
    }
    wait_serial(&k, "net", "srv", "srv-listening");
    wait_serial(&k, "net", "cli", "fetch: got kumo-page-ok");
    // Their traffic shows in their network metrics (the taps' counters, read in QEMU's namespace):
    // srv sent the page (net_tx), cli received it (net_rx).
    for (name, metric) in [("srv", "net_tx"), ("cli", "net_rx")] {
        let path = format!("/v1/instances/{name}/metrics?project=net&metric={metric}");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (s, v) = k.get(&path);
            assert_eq!(s, 200, "{path}: {v}");
            if v["points"].as_array().is_some_and(|p| p.iter().any(|p| p["value"].as_f64() > Some(0.0))) {
                break;
            }
            assert!(Instant::now() < deadline, "no traffic in {path}: {v}\n{}", k.log_tail(20));
            std::thread::sleep(Duration::from_millis(500));
        }
    }
    let log = wait_serial(&k, "net", "cli", "spoof: ");
    assert!(log.contains("spoof: blocked"), "a guest read another instance's metadata:\n{log}");
    let log = wait_serial(&k, "net", "spy", "spy: ");
    assert!(log.contains("spy: unreachable"), "a guest of another VPC reached srv:\n{log}");

    // A floating IP reaches srv from the host namespace only while a rule opens the port.
    ok(k.post("/v1/floating-ips?project=net", json!({"name": "ip1"})), 201);
    let f = ok(k.post("/v1/floating-ips/ip1/attach?project=net", json!({"instance": "srv"})), 200);
    let url = format!("http://{}/", f["ip"].as_str().expect("ip"));
    let fetch = |expect: bool| {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let out = ns.exec(&["curl", "-s", "-m", "2", &url]);
            let got = out.status.success() && String::from_utf8_lossy(&out.stdout).contains("kumo-page-ok");
            if got == expect {
                return;
            }
            assert!(Instant::now() < deadline, "{url} reachable={got}, want {expect}\n{}", k.log_tail(20));
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    fetch(false);
    let open =
        json!({"rules": [{"direction": "ingress", "protocol": "tcp", "port_range": "80", "source": "0.0.0.0/0"}]});
    ok(k.send_put("/v1/security-groups/default/rules?project=net", open), 200);
    fetch(true);
    ok(k.send_put("/v1/security-groups/default/rules?project=net", json!({"rules": []})), 200);
    fetch(false);

    // The host side: one bridge per VPC, a tap per guest, all inside the test's namespace.
    let links = String::from_utf8_lossy(&ns.exec(&["ip", "-o", "link", "show"]).stdout).into_owned();
    assert_eq!(links.matches(": kv").count(), 2, "{links}");
    assert_eq!(links.matches(": kt").count(), 3, "{links}");

    // Deleting the instances removes their taps.
    for name in ["cli", "srv", "spy"] {
        ok(k.delete(&format!("/v1/instances/{name}?project=net")), 202);
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let links = String::from_utf8_lossy(&ns.exec(&["ip", "-o", "link", "show"]).stdout).into_owned();
        if !links.contains(": kt") && !links.contains(": kv") {
            break;
        }
        assert!(Instant::now() < deadline, "taps or bridges left after delete:\n{links}\n{}", k.log_tail(30));
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn links(ns: &Netns) -> String {
    String::from_utf8_lossy(&ns.exec(&["ip", "-o", "link", "show"]).stdout).into_owned()
}

fn wait_for(what: &str, k: &Kumod, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}\nkumod log:\n{}", k.log_tail(30));
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_killed_kumod_converges_the_network_both_ways_and_delete_leaves_nothing() {
    if !qemu_prerequisites() {
        return;
    }
    become_subreaper();
    let ns = Netns::new("crash");
    let mut k = Kumod::start(&[
        "--driver",
        "qemu",
        "--image-cache",
        image_cache(),
        "--stop-timeout",
        "5",
        "--host-netns",
        &ns.0,
    ]);
    k.create_project("net");
    let v = ok(
        k.post(
            "/v1/instances?project=net",
            json!({"name": "vm1", "image": "tiny", "instance_type": "k1-nano", "user_data": "echo ud-ran\n"}),
        ),
        202,
    );
    let ip = v["network_interfaces"][0]["ipv4"].as_str().expect("ip").to_string();
    let tap = format!(
        "kt{}",
        v["network_interfaces"][0]["mac"].as_str().expect("mac").split(':').skip(2).collect::<String>()
    );
    // Killed mid-way (the instance is being created), and the host meanwhile gains leftovers.
    k.kill9();
    for cmd in [
        &["ip", "tuntap", "add", "dev", "ktdeadbeef", "mode", "tap"][..],
        &["ip", "link", "add", "kv999", "type", "bridge"][..],
    ] {
        let out = ns.exec(cmd);
        assert!(out.status.success(), "{cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    k.restart();
    wait_for("the leftovers to go and vm1's tap to exist", &k, || {
        let l = links(&ns);
        !l.contains("ktdeadbeef") && !l.contains("kv999") && l.contains(&tap)
    });
    // The guest got its address from the restarted kumod's DHCP server and ran its user-data.
    wait_serial(&k, "net", "vm1", &format!("kumo-guest: network eth0 {ip}"));
    wait_serial(&k, "net", "vm1", "ud-ran");
    let rules = String::from_utf8_lossy(&ns.exec(&["nft", "list", "ruleset"]).stdout).into_owned();
    assert!(rules.contains(&format!("in-{tap}")) && rules.contains(&format!("spoof-{tap}")), "{rules}");

    ok(k.delete("/v1/instances/vm1?project=net"), 202);
    wait_for("every tap, bridge and nft table to go", &k, || {
        let l = links(&ns);
        let tables = String::from_utf8_lossy(&ns.exec(&["nft", "list", "tables"]).stdout).into_owned();
        !l.contains(": kt") && !l.contains(": kv") && !tables.contains("kumo")
    });
    assert!(common::qemu_pids_under(&k.data_dir().to_string_lossy()).is_empty(), "QEMU left running");
}

/// Benchmark (not a timed test; run with `--ignored --nocapture`): security-group PUT of 1,000
/// rules to live in nft, instance create to DHCP lease, guest-to-guest TCP throughput through the
/// bridge and the firewall against a plain veth pair between two namespaces.
#[test]
#[ignore]
fn bench_network() {
    assert!(qemu_prerequisites(), "the benchmark needs root, QEMU and the tiny image");
    become_subreaper();
    let ns = Netns::new("bench");
    let k = Kumod::start(&[
        "--driver",
        "qemu",
        "--image-cache",
        image_cache(),
        "--stop-timeout",
        "5",
        "--host-netns",
        &ns.0,
    ]);
    k.create_project("net");
    let key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAABAgMEBQYHCAkKCwwNDg8QERITFBUWFxgZGhscHR4f me@laptop";
    ok(k.post("/v1/ssh-keys?project=net", json!({"name": "laptop", "public_key": key})), 201);
    ok(k.post("/v1/vpcs?project=net", json!({"name": "app", "ipv4_cidr": "10.10.0.0/16"})), 201);
    ok(k.post("/v1/vpc-subnets?project=net&vpc=app", json!({"name": "web", "ipv4_cidr": "10.10.1.0/24"})), 201);
    const MB: u32 = 32;
    // srv (.2) serves a MB MiB file over HTTP; cli (.3) fetches it ROUNDS times.
    let srv_ud = format!(
        "mkdir -p /www && dd if=/dev/zero of=/www/big bs=65536 count={} 2>/dev/null && httpd -p 80 -h /www && echo srv-ready\n",
        MB * 16
    );
    // cli fetches the file from srv (busybox wget; its -T crashes, so `timeout` would be the way).
    const ROUNDS: u32 = 4;
    let cli_ud = format!(
        "sleep 2; echo get-start; rc=0; for i in $(seq {ROUNDS}); do wget -q -O /dev/null http://10.10.1.2/big || rc=1; done; \
         echo \"get-end $rc\"\n"
    );
    let t0 = Instant::now();
    let srv = create(&k, "srv", "app", &srv_ud);
    let ip = srv["network_interfaces"][0]["ipv4"].as_str().expect("ip").to_string();
    wait_serial(&k, "net", "srv", &format!("kumo-guest: network eth0 {ip}"));
    let create_to_lease = t0.elapsed();

    // 1,000 rules, then poll nft until the last one is in the kernel.
    let tap = format!(
        "kt{}",
        srv["network_interfaces"][0]["mac"].as_str().expect("mac").split(':').skip(2).collect::<String>()
    );
    let rules: Vec<Value> = (0..1000)
        .map(|i| json!({"direction": "ingress", "protocol": "tcp", "port_range": format!("{}", 10000 + i), "source": "0.0.0.0/0"}))
        .collect();
    let t0 = Instant::now();
    ok(k.send_put("/v1/security-groups/default/rules?project=net", json!({"rules": rules})), 200);
    let put_returned = t0.elapsed();
    loop {
        let out = ns.exec(&["nft", "list", "chain", "inet", "kumo", &format!("in-{tap}")]);
        if String::from_utf8_lossy(&out.stdout).contains("tcp dport 10999 accept") {
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(60), "rules not live after 60 s");
        std::thread::sleep(Duration::from_millis(5));
    }
    let put_to_live = t0.elapsed();
    ok(k.send_put("/v1/security-groups/default/rules?project=net", json!({"rules": []})), 200);

    wait_serial(&k, "net", "srv", "srv-ready");
    create(&k, "cli", "app", &cli_ud);
    wait_serial(&k, "net", "cli", "get-start");
    let t0 = Instant::now();
    loop {
        let log = k.text("/v1/instances/cli/serial-console?project=net");
        if log.contains("get-end") {
            assert!(log.contains("get-end 0"), "the transfer failed:\n{log}");
            break;
        }
        assert!(t0.elapsed() < BOOT, "cli did not fetch {MB} MiB");
        std::thread::sleep(Duration::from_millis(10));
    }
    let guest_secs = t0.elapsed().as_secs_f64();
    let guest_mbps = (MB * ROUNDS) as f64 * 1.048576 / guest_secs;
    let guest_line = format!("{guest_secs:.2} s wall clock, host-side polling of the console");

    // Baseline: the same transfer over a veth pair between two namespaces, no bridge, no rules.
    let a = Netns::new("vetha");
    let b = Netns::new("vethb");
    for n in [&a, &b] {
        assert!(Command::new("ip").args(["netns", "add", &n.0]).status().expect("ip").success());
    }
    let sh = |args: &[&str]| assert!(Command::new("ip").args(args).status().expect("ip").success(), "{args:?}");
    sh(&["-n", &a.0, "link", "add", "va", "type", "veth", "peer", "name", "vb", "netns", &b.0]);
    sh(&["-n", &a.0, "addr", "add", "192.0.2.1/24", "dev", "va"]);
    sh(&["-n", &b.0, "addr", "add", "192.0.2.2/24", "dev", "vb"]);
    sh(&["-n", &a.0, "link", "set", "va", "up"]);
    sh(&["-n", &b.0, "link", "set", "vb", "up"]);
    let mut listener = Command::new("ip")
        .args(["netns", "exec", &b.0, "socat", "-u", "TCP-LISTEN:5001,reuseaddr", "OPEN:/dev/null"])
        .spawn()
        .expect("socat");
    std::thread::sleep(Duration::from_millis(300));
    let out = Command::new("ip")
        .args(["netns", "exec", &a.0, "sh", "-c"])
        .arg(format!("dd if=/dev/zero bs=65536 count={} 2>/tmp/kumo-bench-dd | socat -u - TCP:192.0.2.2:5001; tail -n 1 /tmp/kumo-bench-dd", MB * 16 * ROUNDS))
        .output()
        .expect("baseline");
    let _ = listener.kill();
    let _ = listener.wait();
    let base_line = String::from_utf8_lossy(&out.stdout).trim().to_string();
    // busybox/coreutils dd: "… copied, 0.19 s, 175 MB/s"
    let base_mbps: f64 = base_line
        .rsplit(", ")
        .next()
        .and_then(|x| x.strip_suffix(" MB/s").or_else(|| x.strip_suffix(" GB/s")).map(|n| (n, x.ends_with("GB/s"))))
        .and_then(|(n, g)| n.parse::<f64>().ok().map(|v| if g { v * 1000.0 } else { v }))
        .unwrap_or(0.0);

    println!("create-to-DHCP-lease (POST to the guest's 'network eth0' line, TCG boot included): {create_to_lease:?}");
    println!(
        "security-group PUT of 1000 rules: API returned after {put_returned:?}, live in nft after {put_to_live:?}"
    );
    println!("guest-to-guest TCP ({ROUNDS} x {MB} MiB through bridge + nft): {guest_mbps:.1} MB/s ({guest_line})");
    println!("baseline veth pair, no filtering ({} MiB): {base_mbps:.1} MB/s ({base_line})", MB * ROUNDS);
    if base_mbps > 0.0 {
        println!("ratio guest-to-guest / veth baseline: {:.3}", guest_mbps / base_mbps);
    }
}
