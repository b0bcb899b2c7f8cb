//! kumod serving HTTPS itself: the self-signed certificate made once in DATA_DIR/tls and kept
//! across restarts, given certificate files, the fingerprint file, plain HTTP refused on the TLS
//! port, the dashboard's Secure cookie, and the `kumo` CLI trusting the certificate (`--ca-cert`,
//! `--fingerprint`) or failing with a certificate error when it was not told to.

mod common;

use common::{kumo_binary, Kumod};
use sha2::{Digest, Sha256};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn https_url(k: &Kumod) -> String {
    k.url.replacen("http://", "https://", 1)
}

/// A client that trusts only `cert` (no system roots): in effect pinned to it.
fn client_trusting(cert: &Path) -> reqwest::blocking::Client {
    let pem = std::fs::read(cert).expect("read cert");
    let cert = reqwest::Certificate::from_pem(&pem).expect("pem");
    reqwest::blocking::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(cert)
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client")
}

fn sha256_fingerprint_of_pem(cert: &Path) -> String {
    let pem = std::fs::read_to_string(cert).expect("read cert");
    let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let der = decode_base64(&b64);
    Sha256::digest(&der).iter().map(|b| format!("{b:02X}")).collect::<Vec<_>>().join(":")
}

/// Standard base64 (the PEM body), without pulling a crate into the tests for it.
fn decode_base64(s: &str) -> Vec<u8> {
    let val = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => (c - b'A') as u32,
            b'a'..=b'z' => (c - b'a' + 26) as u32,
            b'0'..=b'9' => (c - b'0' + 52) as u32,
            b'+' => 62,
            b'/' => 63,
            _ => panic!("not base64: {c}"),
        }
    };
    let bytes: Vec<u8> = s.bytes().filter(|c| *c != b'=' && !c.is_ascii_whitespace()).collect();
    let mut out = Vec::new();
    for chunk in bytes.chunks(4) {
        let mut n = 0u32;
        for (i, c) in chunk.iter().enumerate() {
            n |= val(*c) << (18 - 6 * i);
        }
        let take = chunk.len() - 1;
        for i in 0..take {
            out.push((n >> (16 - 8 * i)) as u8);
        }
    }
    out
}

fn me_status(client: &reqwest::blocking::Client, url: &str, token: &str) -> u16 {
    client.get(format!("{url}/v1/me")).bearer_auth(token).send().expect("https request").status().as_u16()
}

#[test]
fn self_signed_certificate_is_served_pinned_and_kept_across_restarts() {
    let mut k = Kumod::sim(&["--tls-self-signed"]);
    let tls = k.data_dir().join("tls");
    let cert = tls.join("cert.pem");
    let url = https_url(&k);

    // The key is the owner's only; the fingerprint file names the served certificate.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(tls.join("key.pem")).expect("key.pem").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "key.pem mode");
    let fingerprint = std::fs::read_to_string(tls.join("fingerprint")).expect("fingerprint").trim().to_string();
    assert_eq!(fingerprint, sha256_fingerprint_of_pem(&cert));
    assert!(k.log_tail(200).contains(&fingerprint), "the log names the fingerprint:\n{}", k.log_tail(40));

    let pinned = client_trusting(&cert);
    assert_eq!(me_status(&pinned, &url, &k.token), 200);

    // Handlers still see the client's address over TLS (audit log, login rate limit).
    let created = pinned
        .post(format!("{url}/v1/projects"))
        .bearer_auth(&k.token)
        .json(&serde_json::json!({"name": "over-tls"}))
        .send()
        .expect("create project");
    assert_eq!(created.status().as_u16(), 201);
    let audit: serde_json::Value = pinned
        .get(format!("{url}/v1/system/audit-log"))
        .bearer_auth(&k.token)
        .send()
        .expect("audit log")
        .json()
        .expect("json");
    let entry = audit["items"]
        .as_array()
        .and_then(|items| items.iter().find(|e| e["operation"] == "project_create"))
        .unwrap_or_else(|| panic!("no project_create entry: {audit}"));
    assert_eq!(entry["source_address"], "127.0.0.1", "{entry}");

    // Plain HTTP to the TLS port gets no HTTP answer.
    let plain = reqwest::blocking::Client::builder().timeout(Duration::from_secs(10)).build().expect("client");
    let answer = plain.get(format!("{}/v1/me", k.url)).bearer_auth(&k.token).send();
    assert!(answer.is_err(), "plain HTTP on the TLS port answered: {:?}", answer.map(|r| r.status()));

    // A client that trusts only the system's roots refuses the self-signed certificate.
    let default = reqwest::blocking::Client::builder().timeout(Duration::from_secs(10)).build().expect("client");
    let err = default.get(format!("{url}/v1/me")).send().expect_err("untrusted certificate");
    assert!(format!("{err:?}").contains("UnknownIssuer"), "{err:?}");

    // The dashboard sees the request came over TLS: its cookies are Secure.
    let login = pinned.get(format!("{url}/login")).send().expect("login page");
    assert_eq!(login.status().as_u16(), 200);
    let cookies: Vec<String> = login
        .headers()
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok().map(str::to_string))
        .collect();
    assert!(!cookies.is_empty() && cookies.iter().all(|c| c.contains("; Secure")), "{cookies:?}");

    // A restart reuses the certificate: same bytes, same fingerprint, the pinned client still works.
    let before = std::fs::read(&cert).expect("cert");
    k.restart();
    assert_eq!(std::fs::read(&cert).expect("cert"), before, "the certificate changed across a restart");
    let after = std::fs::read_to_string(tls.join("fingerprint")).expect("fingerprint");
    assert_eq!(after.trim(), fingerprint);
    assert_eq!(me_status(&pinned, &https_url(&k), &k.token), 200);
}

#[test]
fn given_certificate_files_are_served() {
    let files = tempfile::tempdir().expect("tempdir");
    let cert = kumo_host_rpc::tls::self_signed(&["127.0.0.1".to_string()]).expect("cert");
    let (cert_path, key_path) = (files.path().join("server.crt"), files.path().join("server.key"));
    std::fs::write(&cert_path, &cert.cert_pem).expect("write cert");
    std::fs::write(&key_path, &cert.key_pem).expect("write key");

    let k =
        Kumod::sim(&["--tls-cert", cert_path.to_str().expect("utf-8"), "--tls-key", key_path.to_str().expect("utf-8")]);
    assert_eq!(me_status(&client_trusting(&cert_path), &https_url(&k), &k.token), 200);
    let written = std::fs::read_to_string(k.data_dir().join("tls/fingerprint")).expect("fingerprint");
    assert_eq!(written.trim(), sha256_fingerprint_of_pem(&cert_path));
    assert!(!k.data_dir().join("tls/cert.pem").exists(), "no self-signed certificate is made beside given files");
}

/// Runs kumod until it exits (it must, within 60 s), returning its output.
fn kumod_exits(args: &[&str]) -> Output {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut child = Command::new(common::kumod_binary())
        .arg("--data-dir")
        .arg(dir.path())
        .args([
            "--listen",
            "127.0.0.1:0",
            "--s3-listen",
            "127.0.0.1:0",
            "--driver",
            "sim",
            "--image-cache",
            "/nonexistent",
        ])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn kumod");
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("kumod did not refuse to start within 60 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("output")
}

#[test]
fn an_unusable_certificate_refuses_the_start_naming_the_file() {
    let files = tempfile::tempdir().expect("tempdir");
    let bad = files.path().join("bad.crt");
    std::fs::write(&bad, "not a certificate").expect("write");
    let out = kumod_exits(&["--tls-cert", bad.to_str().expect("utf-8"), "--tls-key", bad.to_str().expect("utf-8")]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("bad.crt"), "{stderr}");
}

/// `kumo` with its own config file and none of the caller's KUMO_* settings.
fn kumo(config: &Path, args: &[&str]) -> Output {
    let mut cmd = Command::new(kumo_binary());
    for var in ["KUMO_URL", "KUMO_TOKEN", "KUMO_CA_CERT", "KUMO_FINGERPRINT"] {
        cmd.env_remove(var);
    }
    cmd.env("KUMO_CONFIG", config).args(args).stdin(Stdio::null()).output().expect("run kumo")
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

#[test]
fn the_cli_trusts_the_certificate_it_is_given_and_refuses_otherwise() {
    let k = Kumod::sim(&["--tls-self-signed"]);
    let url = https_url(&k);
    let token_file = k.data_dir().join("admin-token");
    let token_file = token_file.to_str().expect("utf-8");
    let cert = k.data_dir().join("tls/cert.pem");
    let home = tempfile::tempdir().expect("tempdir");
    let config = home.path().join("config.json");

    // Not told to trust the self-signed certificate: a clear certificate error, nothing saved.
    let out = kumo(&config, &["login", "--url", &url, "--token-file", token_file]);
    assert!(!out.status.success(), "{}", text(&out));
    let msg = text(&out);
    assert!(msg.contains("certificate is not trusted") && msg.contains("--ca-cert"), "{msg}");
    assert!(!config.exists());

    // With --ca-cert: login saves the certificate; later commands use it without the flag.
    let out =
        kumo(&config, &["login", "--url", &url, "--token-file", token_file, "--ca-cert", cert.to_str().expect("p")]);
    assert!(out.status.success(), "{}", text(&out));
    let out = kumo(&config, &["project", "create", "demo"]);
    assert!(out.status.success(), "{}", text(&out));
    let out = kumo(&config, &["project", "list"]);
    assert!(out.status.success() && text(&out).contains("demo"), "{}", text(&out));

    // Pinned by fingerprint (from the file kumod writes), in another config.
    let fingerprint = std::fs::read_to_string(k.data_dir().join("tls/fingerprint")).expect("fingerprint");
    let pinned_config = home.path().join("pinned.json");
    let out = kumo(
        &pinned_config,
        &["login", "--url", &url, "--token-file", token_file, "--fingerprint", fingerprint.trim()],
    );
    assert!(out.status.success(), "{}", text(&out));
    let out = kumo(&pinned_config, &["project", "list"]);
    assert!(out.status.success() && text(&out).contains("demo"), "{}", text(&out));

    // A wrong pin is refused, saying which certificate the server showed.
    let wrong = vec!["00"; 32].join(":");
    let out = kumo(
        &home.path().join("wrong.json"),
        &["login", "--url", &url, "--token-file", token_file, "--fingerprint", &wrong],
    );
    assert!(!out.status.success());
    assert!(text(&out).contains("not the pinned") && text(&out).contains(fingerprint.trim()), "{}", text(&out));

    // The saved trust belongs to the saved URL: plain http to the same port is another server.
    let out = kumo(&config, &["--url", &k.url, "project", "list"]);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("try an https:// URL"), "{}", text(&out));
}

/// A network namespace (with a veth holding 192.0.2.10) removed on drop: the only
/// place a test may listen on a non-loopback address.
struct Netns(String);

impl Netns {
    fn new() -> Netns {
        let ns = Netns(format!("kumo-tls-{}", std::process::id()));
        let _ = Command::new("ip").args(["netns", "del", &ns.0]).status();
        let ip = |args: &[&str]| {
            let ok = Command::new("ip").args(args).status().expect("run ip").success();
            assert!(ok, "ip {args:?} failed");
        };
        ip(&["netns", "add", &ns.0]);
        ip(&["-n", &ns.0, "link", "set", "lo", "up"]);
        // A veth pair inside the namespace (the dummy module may be missing in containers).
        ip(&["-n", &ns.0, "link", "add", "va", "type", "veth", "peer", "name", "vb"]);
        ip(&["-n", &ns.0, "addr", "add", "192.0.2.10/24", "dev", "va"]);
        ip(&["-n", &ns.0, "link", "set", "va", "up"]);
        ip(&["-n", &ns.0, "link", "set", "vb", "up"]);
        ns
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// kumod inside the namespace (`ip netns exec` execs it: the child is kumod), killed on drop.
struct NsKumod {
    child: std::process::Child,
    dir: tempfile::TempDir,
    addr: String,
}

impl NsKumod {
    fn start(ns: &Netns, extra: &[&str]) -> NsKumod {
        let dir = tempfile::Builder::new().prefix("kt").tempdir_in("/tmp").expect("temp dir");
        let log = std::fs::File::create(dir.path().join("kumod.log")).expect("log");
        let child = Command::new("ip")
            .args(["netns", "exec", &ns.0])
            .arg(common::kumod_binary())
            .arg("--data-dir")
            .arg(dir.path())
            .args([
                "--listen",
                "192.0.2.10:0",
                "--s3-listen",
                "127.0.0.1:0",
                "--driver",
                "sim",
                "--image-cache",
                "/nonexistent",
            ])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup"))
            .stderr(log)
            .spawn()
            .expect("spawn kumod");
        let mut k = NsKumod { child, dir, addr: String::new() };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let addr = std::fs::read_to_string(k.dir.path().join("kumod.addr")).unwrap_or_default();
            if addr.ends_with('\n') {
                k.addr = addr.trim().to_string();
                return k;
            }
            assert!(k.child.try_wait().expect("wait").is_none(), "kumod exited:\n{}", k.log());
            assert!(Instant::now() < deadline, "kumod did not start within 60 s:\n{}", k.log());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("kumod.log")).unwrap_or_default()
    }

    fn token(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("admin-token")).expect("admin-token").trim().to_string()
    }

    /// `kumo ARGS` inside the namespace, with its own config.
    fn kumo(&self, ns: &Netns, args: &[&str]) -> Output {
        let mut cmd = Command::new("ip");
        for var in ["KUMO_URL", "KUMO_TOKEN", "KUMO_CA_CERT", "KUMO_FINGERPRINT"] {
            cmd.env_remove(var);
        }
        cmd.args(["netns", "exec", &ns.0])
            .arg(kumo_binary())
            .args(args)
            .env("KUMO_CONFIG", self.dir.path().join("cli.json"))
            .stdin(Stdio::null())
            .output()
            .expect("run kumo")
    }
}

impl Drop for NsKumod {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_non_loopback_address_gets_tls_by_default_and_plain_http_only_when_insecure() {
    // SAFETY: geteuid has no preconditions.
    assert_eq!(unsafe { libc::geteuid() }, 0, "this test creates a network namespace: run it as root");
    let ns = Netns::new();

    // No TLS flag on 192.0.2.10: HTTPS with a self-signed certificate that names that address
    // (the CLI's --ca-cert check verifies the name).
    let k = NsKumod::start(&ns, &[]);
    let cert = k.dir.path().join("tls/cert.pem");
    assert!(cert.exists(), "no self-signed certificate:\n{}", k.log());
    let url = format!("https://{}", k.addr);
    let out =
        k.kumo(&ns, &["--url", &url, "--token", &k.token(), "--ca-cert", cert.to_str().expect("p"), "project", "list"]);
    assert!(out.status.success(), "{}\n{}", text(&out), k.log());
    drop(k);

    // --insecure-http: plain HTTP, with the loud warning.
    let k = NsKumod::start(&ns, &["--insecure-http"]);
    assert!(k.log().contains("WARNING: kumod serves PLAIN HTTP on the non-loopback address"), "{}", k.log());
    assert!(!k.dir.path().join("tls/cert.pem").exists());
    let out = k.kumo(&ns, &["--url", &format!("http://{}", k.addr), "--token", &k.token(), "project", "list"]);
    assert!(out.status.success(), "{}\n{}", text(&out), k.log());
}
