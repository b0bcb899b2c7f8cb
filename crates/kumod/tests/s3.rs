//! The S3 endpoint (issue 14) driven by the clients tenants use, unchanged: the aws CLI and boto3
//! (from PyPI, in the venv of scripts/s3-clients.sh), rclone and s3cmd (Debian's). The boto3 cases
//! live in `s3_clients/suite.py`, each asserting what it checks; here each kumod is started, the
//! tenants and their access keys made through the REST API, and the results checked on disk and
//! in the store.

mod common;

use common::Kumod;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

const PASSWORD: &str = "correct horse battery staple";

/// The venv of the aws CLI and boto3 (None: absent, and not strict).
fn clients() -> Option<PathBuf> {
    let dir = PathBuf::from(std::env::var("KUMO_S3_CLIENTS").unwrap_or_else(|_| "/var/cache/kumo/s3-clients".into()));
    if dir.join("bin/aws").exists() && dir.join("bin/python").exists() {
        return Some(dir);
    }
    let msg = format!("the S3 clients are missing from {} (scripts/s3-clients.sh)", dir.display());
    assert!(!common::strict(), "{msg}");
    eprintln!("SKIPPED: {msg}");
    None
}

fn need(cmd: &str, how: &str) -> bool {
    if Command::new(cmd).arg("--version").output().is_ok() {
        return true;
    }
    let msg = format!("{cmd} is missing ({how})");
    assert!(!common::strict(), "{msg}");
    eprintln!("SKIPPED: {msg}");
    false
}

/// A kumod with projects `demo` (alice owns it, victor views it) and `elsewhere` (olga owns it),
/// and an access key each: `owner` (alice in demo), `viewer` (victor in demo), `other` (olga in
/// elsewhere).
struct Tenants {
    k: Kumod,
    endpoint: String,
    /// name → [access key id, secret]
    keys: serde_json::Map<String, Value>,
    sessions: std::collections::HashMap<String, String>,
}

fn login(k: &Kumod, user: &str) -> String {
    let r = k.http.post(format!("{}/v1/login", k.url)).json(&json!({"username": user, "password": PASSWORD})).send();
    let v: Value = r.expect("login").json().expect("login json");
    v["token"].as_str().unwrap_or_else(|| panic!("login as {user}: {v}")).to_string()
}

fn as_user(k: &Kumod, token: &str, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
    let mut req = k.http.request(method, format!("{}{path}", k.url)).bearer_auth(token);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().expect("request");
    let status = resp.status().as_u16();
    let text = resp.text().unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

fn tenants(extra: &[&str]) -> Tenants {
    let mut args = vec!["--driver", "sim", "--image-cache", "/nonexistent"];
    args.extend_from_slice(extra);
    let k = Kumod::start(&args);
    k.create_project("demo");
    k.create_project("elsewhere");
    for (user, project, role) in
        [("alice", "demo", "owner"), ("victor", "demo", "viewer"), ("olga", "elsewhere", "owner")]
    {
        let (s, v) = k.post("/v1/users", json!({"name": user, "password": PASSWORD}));
        assert_eq!(s, 201, "{v}");
        let (s, v) = k.post(&format!("/v1/projects/{project}/members"), json!({"user": user, "role": role}));
        assert_eq!(s, 201, "{v}");
    }
    let mut keys = serde_json::Map::new();
    let mut sessions = std::collections::HashMap::new();
    for (name, user, project) in
        [("owner", "alice", "demo"), ("viewer", "victor", "demo"), ("other", "olga", "elsewhere")]
    {
        let token = login(&k, user);
        let (s, v) = as_user(
            &k,
            &token,
            reqwest::Method::POST,
            &format!("/v1/access-keys?project={project}"),
            Some(json!({"name": name})),
        );
        assert_eq!(s, 201, "{v}");
        keys.insert(name.into(), json!([v["access_key_id"], v["secret_access_key"]]));
        sessions.insert(user.to_string(), token);
    }
    let addr = std::fs::read_to_string(k.data_dir().join("s3.addr")).expect("DATA_DIR/s3.addr");
    let endpoint = format!("http://{}", addr.trim());
    Tenants { k, endpoint, keys, sessions }
}

impl Tenants {
    fn key(&self, name: &str) -> (String, String) {
        let k = &self.keys[name];
        (k[0].as_str().unwrap().to_string(), k[1].as_str().unwrap().to_string())
    }

    /// Runs a case of suite.py; panics with its output when it fails.
    fn boto3(&self, case: &str, env: &[(&str, &str)]) -> String {
        let dir = clients().expect("clients");
        let work = tempfile::tempdir().expect("work dir");
        let suite = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/s3_clients/suite.py");
        let out = Command::new(dir.join("bin/python"))
            .arg(&suite)
            .arg(case)
            .env("S3_ENDPOINT", &self.endpoint)
            .env("KEYS", Value::Object(self.keys.clone()).to_string())
            .env("WORK", work.path())
            .env("AWS_CONFIG_FILE", "/nonexistent")
            .env("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
            .envs(env.iter().copied())
            .output()
            .expect("run python");
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "suite.py {case} failed:\n{text}\n--- kumod log:\n{}", self.k.log_tail(30));
        assert!(text.contains(&format!("ok {case}")), "suite.py {case} did not finish:\n{text}");
        text
    }

    /// The aws CLI with key `key`.
    fn aws(&self, key: &str, args: &[&str]) -> Output {
        let dir = clients().expect("clients");
        let (id, secret) = self.key(key);
        Command::new(dir.join("bin/aws"))
            .args(["--endpoint-url", &self.endpoint])
            .args(args)
            .args(if args.len() > 1 && args[0] == "s3" && ["cp", "mv", "rm", "sync"].contains(&args[1]) {
                &["--only-show-errors"][..]
            } else {
                &[][..]
            })
            .env("AWS_ACCESS_KEY_ID", id)
            .env("AWS_SECRET_ACCESS_KEY", secret)
            .env("AWS_DEFAULT_REGION", "us-east-1")
            .env("AWS_CONFIG_FILE", "/nonexistent")
            .env("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
            .output()
            .expect("run aws")
    }

    fn aws_ok(&self, args: &[&str]) -> String {
        let out = self.aws("owner", args);
        assert!(
            out.status.success(),
            "aws {args:?}: {}{}\n--- kumod log:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.k.log_tail(15)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

#[test]
fn boto3_buckets_objects_listing_copy_and_errors() {
    if clients().is_none() {
        return;
    }
    let t = tenants(&[]);
    t.boto3("operations", &[]);
    // Mutations are in the audit log, with the key that made them.
    let (s, v) = t.k.get("/v1/events?project=demo&limit=1000");
    assert_eq!(s, 200, "{v}");
    let events = v["items"].as_array().expect("items");
    let has = |ty: &str, name: &str, kind: &str| {
        events.iter().any(|e| e["resource_type"] == ty && e["resource_name"] == name && e["kind"] == kind)
    };
    assert!(has("bucket", "ops", "created"), "{v}");
    assert!(has("bucket", "ops-copy", "deleted"), "{v}");
    assert!(has("object", "ops/dir/a.txt", "put"), "{v}");
    assert!(has("object", "ops-copy/a-copy", "deleted"), "{v}");
    let cause = events.iter().find(|e| e["resource_name"] == "ops").map(|e| e["cause"].to_string()).unwrap_or_default();
    assert!(cause.contains("alice") && cause.contains("access key"), "{cause}");
}

#[test]
fn boto3_multipart_of_a_gibibyte_in_parallel_and_the_rules_of_completion() {
    if clients().is_none() {
        return;
    }
    let t = tenants(&[]);
    let out = t.boto3("multipart", &[]);
    eprintln!("{out}");
    // Parts are the object's blobs: nothing was written twice, nothing is left over.
    let blobs = blob_files(t.k.data_dir());
    let used: u64 = blobs.iter().map(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)).sum();
    assert!(used >= 1 << 30, "{used} bytes of blobs for a 1 GiB object");
}

#[test]
fn access_keys_roles_projects_anonymous_presigned_and_revocation() {
    if clients().is_none() {
        return;
    }
    let t = tenants(&[]);
    t.boto3("access", &[]);
    // A deleted key stops working at once.
    let (s, v) =
        as_user(&t.k, &t.sessions["victor"], reqwest::Method::DELETE, "/v1/access-keys/viewer?project=demo", None);
    assert_eq!(s, 204, "{v}");
    t.boto3("revoked", &[("KEY_NAME", "viewer")]);
    // So does the key of a user who leaves the project (role read on every request).
    let (s, v) = t.k.delete("/v1/projects/elsewhere/members/olga");
    assert_eq!(s, 204, "{v}");
    let out = t.aws("other", &["s3", "ls"]);
    assert!(!out.status.success(), "a former member's key still lists buckets");
    assert!(String::from_utf8_lossy(&out.stderr).contains("AccessDenied"), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn versioning_keeps_versions_and_delete_markers_and_the_quota_counts_every_version() {
    if clients().is_none() {
        return;
    }
    let t = tenants(&[]);
    t.boto3("versioning", &[]);
    let (s, v) = t.k.get("/v1/buckets/ver?project=demo");
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["versioning"], "suspended", "{v}");
    assert_eq!((v["objects"].as_u64(), v["bytes"].as_u64()), (Some(0), Some(0)), "{v}");
    // Every version was charged while it lived and given back when it went.
    let (s, q) = t.k.get("/v1/projects/demo/quotas");
    assert_eq!(s, 200, "{q}");
    assert_eq!((q["used"]["objects"].as_u64(), q["used"]["object_bytes"].as_u64()), (Some(0), Some(0)), "{q}");
    let (s, v) = t.k.get("/v1/events?project=demo&limit=1000");
    assert_eq!(s, 200, "{v}");
    let kinds: Vec<&str> = v["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter(|e| e["resource_name"] == "ver" || e["resource_name"] == "ver/k")
        .filter_map(|e| e["kind"].as_str())
        .collect();
    for kind in ["versioning enabled", "versioning suspended", "deleted (a delete marker)", "version deleted"] {
        assert!(kinds.contains(&kind), "no '{kind}' event in {kinds:?}");
    }
    let (s, v) = t.k.delete("/v1/buckets/ver?project=demo");
    assert_eq!(s, 204, "{v}");
}

#[test]
fn concurrent_writers_of_one_key_all_succeed_and_the_quota_stays_exact() {
    if clients().is_none() {
        return;
    }
    let t = tenants(&[]);
    t.boto3("same_key", &[]);
    // Unversioned: at most the one object; versioned: its 80 versions (2 bytes each, "w-i").
    let (_, a) = t.k.get("/v1/buckets/same-key?project=demo");
    let (_, b) = t.k.get("/v1/buckets/same-key-v?project=demo");
    let (_, q) = t.k.get("/v1/projects/demo/quotas");
    // And "once", created by one of the If-None-Match writers (1 byte): the refused ones left nothing.
    let objects = a["objects"].as_u64().unwrap_or(9) + 80;
    assert_eq!(q["used"]["objects"].as_u64(), Some(objects), "{q} {a} {b}");
    assert_eq!(q["used"]["object_bytes"].as_u64(), Some(a["bytes"].as_u64().unwrap_or(0) + 240), "{q} {a} {b}");
    assert_eq!(b["bytes"].as_u64(), Some(240), "{b}");
    // A blob file per write that succeeded (80 + 80 + 1; what overwrites replaced waits for the
    // sweep), none from the 7 refused ones.
    let files = blob_files(t.k.data_dir()).len();
    assert_eq!(files, 161, "{files} blob files");
}

#[test]
fn quotas_count_objects_and_bytes() {
    if clients().is_none() {
        return;
    }
    let t = tenants(&[]);
    let (s, v) = t.k.send_put("/v1/projects/demo/quotas", json!({"objects": 3, "object_storage_gib": 1}));
    assert_eq!(s, 200, "{v}");
    t.boto3("quota", &[]);
    let (s, v) = t.k.get("/v1/projects/demo/quotas");
    assert_eq!(s, 200, "{v}");
    // k0 (500 bytes), k2 (1,000) and k3 (10); the upload's parts given back.
    assert_eq!(v["used"]["objects"], 3, "{v}");
    assert_eq!(v["used"]["object_bytes"], 1510, "{v}");
    assert_eq!(v["limits"]["objects"], 3, "{v}");
    assert_eq!(v["limits"]["object_storage_gib"], 1, "{v}");
}

#[test]
fn lifecycle_rules_expire_objects_and_abort_uploads_under_their_prefix() {
    if clients().is_none() {
        return;
    }
    let mut t = tenants(&[]);
    t.boto3("lifecycle_set", &[]);
    // Two days pass for everything in the bucket.
    t.k.kill9();
    common::with_store(&t.k, async |conn| {
        let old = (chrono::Utc::now() - chrono::Duration::days(2)).to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
        sqlx::query("UPDATE objects SET time_modified = $1").bind(&old).execute(&mut *conn).await.expect("age objects");
        sqlx::query("UPDATE objects SET time_noncurrent = $1 WHERE time_noncurrent IS NOT NULL")
            .bind(&old)
            .execute(&mut *conn)
            .await
            .expect("age noncurrent versions");
        sqlx::query("UPDATE multipart_uploads SET time_created = $1")
            .bind(&old)
            .execute(&mut *conn)
            .await
            .expect("age uploads");
    });
    // The start-up sweep applies the rules before the endpoint serves.
    t.k.restart();
    let addr = std::fs::read_to_string(t.k.data_dir().join("s3.addr")).expect("s3.addr");
    t.endpoint = format!("http://{}", addr.trim());
    t.boto3("lifecycle_check", &[]);
    let (_, v) = t.k.get("/v1/projects/demo/quotas");
    // keep/c and top, and life-v's "second" (noncurrent, kept one more day): expired objects and
    // versions were released from the quota.
    assert_eq!((v["used"]["objects"].as_u64(), v["used"]["object_bytes"].as_u64()), (Some(3), Some(15)), "{v}");
    let (_, v) = t.k.get("/v1/events?project=demo&limit=1000");
    let of_kind = |kind: &str| -> Vec<(String, String)> {
        let items = v["items"].as_array().expect("items");
        let named = |e: &Value, f: &str| e[f].as_str().unwrap_or("").to_string();
        items.iter().filter(|e| e["kind"] == kind).map(|e| (named(e, "resource_name"), named(e, "cause"))).collect()
    };
    let mut expired = of_kind("expired");
    expired.sort();
    assert_eq!(
        expired,
        vec![
            ("life-v/a".to_string(), "lifecycle rule 'all' of bucket 'life-v'".to_string()),
            ("life/logs/a".to_string(), "lifecycle rule 'logs' of bucket 'life'".to_string()),
            ("life/logs/b".to_string(), "lifecycle rule 'logs' of bucket 'life'".to_string()),
        ],
        "{v}"
    );
    let noncurrent = of_kind("noncurrent version expired");
    assert_eq!(noncurrent.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(), ["life-v/a"], "{v}");
}

#[test]
fn virtual_host_style_requests() {
    if clients().is_none() {
        return;
    }
    let t = tenants(&["--s3-domain", "s3.kumo.test"]);
    t.boto3("virtual_host", &[]);
}

#[test]
fn aws_cli_s3_and_s3api() {
    if clients().is_none() {
        return;
    }
    let t = tenants(&[]);
    let dir = tempfile::tempdir().expect("dir");
    let big = dir.path().join("big.iso");
    let data: Vec<u8> = (0..(40u32 << 20)).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
    std::fs::write(&big, &data).expect("write");
    std::fs::write(dir.path().join("small.txt"), b"small\n").expect("write");
    t.aws_ok(&["s3", "mb", "s3://photos"]);
    t.aws_ok(&["s3", "cp", &big.to_string_lossy(), "s3://photos/"]);
    t.aws_ok(&["s3", "cp", &dir.path().join("small.txt").to_string_lossy(), "s3://photos/docs/small.txt"]);
    let ls = t.aws_ok(&["s3", "ls", "s3://photos/", "--recursive"]);
    assert!(ls.contains("big.iso") && ls.contains("docs/small.txt") && ls.contains(&(40u32 << 20).to_string()), "{ls}");
    let back = dir.path().join("back.iso");
    t.aws_ok(&["s3", "cp", "s3://photos/big.iso", &back.to_string_lossy()]);
    assert!(std::fs::read(&back).expect("read") == data, "the downloaded copy differs");
    let head: Value =
        serde_json::from_str(&t.aws_ok(&["s3api", "head-object", "--bucket", "photos", "--key", "big.iso"]))
            .expect("json");
    assert!(head["ETag"].as_str().unwrap_or("").contains('-'), "a multipart ETag: {head}");
    // A server-side copy over the CLI's multipart threshold: CreateMultipartUpload + UploadPartCopy.
    t.aws_ok(&["s3", "mb", "s3://photos-copy"]);
    t.aws_ok(&["s3", "cp", "s3://photos/big.iso", "s3://photos-copy/big.iso"]);
    let copy = dir.path().join("copy.iso");
    t.aws_ok(&["s3", "cp", "s3://photos-copy/big.iso", &copy.to_string_lossy()]);
    assert!(std::fs::read(&copy).expect("read") == data, "the server-side copy differs");
    let (_, v) = t.k.get("/v1/events?project=demo&limit=1000");
    let put = v["items"].as_array().unwrap().iter().find(|e| e["resource_name"] == "photos-copy/big.iso").cloned();
    let cause = put.map(|e| e["cause"].to_string()).unwrap_or_default();
    assert!(cause.contains("s3_complete_multipart_upload"), "the copy was a multipart upload of copied parts: {cause}");
    let url = t.aws_ok(&["s3", "presign", "s3://photos/docs/small.txt", "--expires-in", "300"]);
    let body = reqwest::blocking::get(url.trim()).expect("GET presigned").bytes().expect("body");
    assert_eq!(&body[..], b"small\n");
    let out = t.aws("owner", &["s3", "rb", "s3://photos"]);
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("BucketNotEmpty"));
    t.aws_ok(&["s3", "rm", "s3://photos/", "--recursive"]);
    t.aws_ok(&["s3", "rb", "s3://photos"]);
    let ls = t.aws_ok(&["s3", "ls"]);
    assert!(!ls.contains("photos\n") && ls.contains("photos-copy"), "{ls}");
    // Bad input: an invalid bucket name, a viewer writing.
    let out = t.aws("owner", &["s3api", "create-bucket", "--bucket", "UPPER_case"]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("InvalidBucketName"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    t.aws_ok(&["s3", "mb", "s3://shared"]);
    let out = t.aws("viewer", &["s3", "cp", &dir.path().join("small.txt").to_string_lossy(), "s3://shared/x"]);
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("AccessDenied"));
}

#[test]
fn rclone_sync_and_s3cmd() {
    if clients().is_none()
        || !need("rclone", "scripts/install-deps.sh --with-s3-clients")
        || !need("s3cmd", "scripts/install-deps.sh --with-s3-clients")
    {
        return;
    }
    let t = tenants(&[]);
    let (id, secret) = t.key("owner");
    let site = tempfile::tempdir().expect("dir");
    for (name, body) in [("index.html", "<h1>hi</h1>"), ("css/site.css", "body{}"), ("img/a.bin", "aaaa")] {
        let p = site.path().join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, body).unwrap();
    }
    let rclone = |args: &[&str]| {
        let out = Command::new("rclone")
            .args(args)
            .env("RCLONE_CONFIG", "/nonexistent")
            // The machine's AWS_CA_BUNDLE makes rclone refuse a plain-HTTP endpoint.
            .env_remove("AWS_CA_BUNDLE")
            .env("RCLONE_CONFIG_KUMO_TYPE", "s3")
            .env("RCLONE_CONFIG_KUMO_PROVIDER", "Other")
            .env("RCLONE_CONFIG_KUMO_ENDPOINT", &t.endpoint)
            .env("RCLONE_CONFIG_KUMO_ACCESS_KEY_ID", &id)
            .env("RCLONE_CONFIG_KUMO_SECRET_ACCESS_KEY", &secret)
            .env("RCLONE_CONFIG_KUMO_REGION", "us-east-1")
            .output()
            .expect("rclone");
        assert!(out.status.success(), "rclone {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    rclone(&["mkdir", "kumo:web"]);
    rclone(&["sync", &site.path().to_string_lossy(), "kumo:web/site"]);
    rclone(&["check", &site.path().to_string_lossy(), "kumo:web/site"]);
    std::fs::remove_file(site.path().join("img/a.bin")).unwrap();
    std::fs::write(site.path().join("index.html"), "<h1>changed</h1>").unwrap();
    rclone(&["sync", &site.path().to_string_lossy(), "kumo:web/site"]);
    rclone(&["check", &site.path().to_string_lossy(), "kumo:web/site"]);
    let ls = rclone(&["ls", "kumo:web"]);
    assert!(ls.contains("site/index.html") && !ls.contains("a.bin"), "{ls}");

    let host = t.endpoint.trim_start_matches("http://").to_string();
    let cfg = site.path().join("s3cfg");
    std::fs::write(
        &cfg,
        format!(
            "[default]\naccess_key = {id}\nsecret_key = {secret}\nhost_base = {host}\nhost_bucket = {host}\nuse_https = False\nbucket_location = us-east-1\nsignature_v2 = False\n"
        ),
    )
    .unwrap();
    let s3cmd = |args: &[&str]| {
        let out = Command::new("s3cmd").arg("--config").arg(&cfg).args(args).output().expect("s3cmd");
        assert!(
            out.status.success(),
            "s3cmd {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    s3cmd(&["mb", "s3://tools"]);
    s3cmd(&["put", &site.path().join("index.html").to_string_lossy(), "s3://tools/index.html"]);
    let ls = s3cmd(&["ls", "s3://tools"]);
    assert!(ls.contains("s3://tools/index.html"), "{ls}");
    let got = site.path().join("got.html");
    s3cmd(&["get", "s3://tools/index.html", &got.to_string_lossy()]);
    assert_eq!(std::fs::read_to_string(&got).unwrap(), "<h1>changed</h1>");
    s3cmd(&["del", "s3://tools/index.html"]);
    s3cmd(&["rb", "s3://tools"]);
    let ls = s3cmd(&["ls"]);
    assert!(!ls.contains("s3://tools") && ls.contains("s3://web"), "{ls}");
}

/// Every blob file of a data directory.
fn blob_files(data_dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(dirs) = std::fs::read_dir(data_dir.join("objects/blobs")) {
        for d in dirs.flatten() {
            if let Ok(files) = std::fs::read_dir(d.path()) {
                out.extend(files.flatten().map(|f| f.path()));
            }
        }
    }
    out
}

#[test]
fn kill_9_during_puts_and_multipart_completes_loses_nothing_acknowledged_and_leaks_nothing() {
    if clients().is_none() {
        return;
    }
    let mut t = tenants(&[]);
    t.aws_ok(&["s3", "mb", "s3://crash"]);
    let acks = tempfile::NamedTempFile::new().expect("acks");
    let acks_path = acks.path().to_string_lossy().into_owned();
    let kills = 3;
    for round in 0..kills {
        let dir = clients().expect("clients");
        let suite = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/s3_clients/suite.py");
        let start = (round * 100_000).to_string();
        let writer = Command::new(dir.join("bin/python"))
            .arg(&suite)
            .arg("crash_writer")
            .env("S3_ENDPOINT", &t.endpoint)
            .env("KEYS", Value::Object(t.keys.clone()).to_string())
            .env("ACKS", &acks_path)
            .env("START", &start)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("writer");
        // Kill at a different point of the stream each round.
        std::thread::sleep(Duration::from_millis(2500 + 1300 * round as u64));
        t.k.kill9();
        let out = writer.wait_with_output().expect("writer output");
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success() && text.contains("ok crash_writer"), "{text}");
        // The same data directory (and database) again: its start-up sweep runs before it serves,
        // and the endpoint comes back on a new port.
        t.k.restart();
        let addr = std::fs::read_to_string(t.k.data_dir().join("s3.addr")).expect("s3.addr");
        t.endpoint = format!("http://{}", addr.trim());
    }
    let acked = std::fs::read_to_string(&acks_path).unwrap().lines().count();
    assert!(acked >= 10, "only {acked} objects were acknowledged before the kills");
    let out = t.boto3("crash_check", &[("ACKS", &acks_path), ("KILLS", &kills.to_string())]);
    eprintln!("{out}");
    // No orphaned data: every blob file is named by a row (the start-up sweep removed the rest).
    t.k.kill9();
    let files: std::collections::BTreeSet<String> =
        blob_files(t.k.data_dir()).iter().map(|p| p.file_name().unwrap().to_string_lossy().into_owned()).collect();
    let mut rows = std::collections::BTreeSet::new();
    common::with_store(&t.k, async |conn| {
        let ids: Vec<String> = sqlx::query_scalar("SELECT id FROM blobs").fetch_all(&mut *conn).await.expect("blobs");
        rows.extend(ids);
    });
    let orphans: Vec<_> = files.difference(&rows).collect();
    let missing: Vec<_> = rows.difference(&files).collect();
    assert!(orphans.is_empty(), "{} orphaned blob files: {orphans:?}", orphans.len());
    assert!(missing.is_empty(), "rows name missing blobs: {missing:?}");
    assert_eq!(std::fs::read_dir(t.k.data_dir().join("objects/tmp")).unwrap().count(), 0, "leftover temporary files");
}

#[test]
fn kumo_bucket_commands_show_what_buckets_hold_and_switch_public_read() {
    if clients().is_none() {
        return;
    }
    let t = tenants(&[]);
    let kumo = |user: &str, args: &[&str]| -> (bool, String) {
        let out = Command::new(common::kumo_binary())
            .args(["--url", &t.k.url, "--token", &t.sessions[user]])
            .args(args)
            .output()
            .expect("kumo");
        (
            out.status.success(),
            format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)),
        )
    };
    let (ok, out) = kumo("alice", &["bucket", "create", "site", "--project", "demo"]);
    assert!(ok, "{out}");
    let (ok, out) = kumo("alice", &["bucket", "create", "Bad_Name", "--project", "demo"]);
    assert!(!ok && out.contains("not a valid bucket name"), "{out}");
    let (ok, out) = kumo("olga", &["bucket", "create", "site", "--project", "elsewhere"]);
    assert!(!ok && out.contains("taken"), "{out}");
    let (ok, out) = kumo("victor", &["bucket", "create", "viewers", "--project", "demo"]);
    assert!(!ok, "a viewer made a bucket: {out}");
    // Storage at 1.00 per GiB-second (730 h × 3600 s): a bucket holding anything costs at once.
    let (s, v) = t.k.send_put("/v1/system/prices", json!({"kind": "object_storage", "unit_price": "2628000.00"}));
    assert_eq!(s, 200, "{v}");
    let dir = tempfile::tempdir().expect("dir");
    let page = dir.path().join("index.html");
    std::fs::write(&page, "<h1>site</h1>").unwrap();
    t.aws_ok(&["s3", "cp", &page.to_string_lossy(), "s3://site/index.html"]);
    t.aws_ok(&["s3", "cp", &page.to_string_lossy(), "s3://site/copy.html"]);
    std::thread::sleep(Duration::from_secs(2));
    let (ok, out) = kumo("victor", &["bucket", "list", "--project", "demo", "-o", "json"]);
    assert!(ok, "{out}");
    let v: Value = serde_json::from_str(&out).expect("json");
    let b = v["items"].as_array().and_then(|a| a.iter().find(|b| b["name"] == "site")).cloned().expect("site listed");
    assert_eq!(
        (b["objects"].as_u64(), b["bytes"].as_u64(), b["public_read"].as_bool()),
        (Some(2), Some(26), Some(false)),
        "{b}"
    );
    // Its cost so far: the usage report's bucket line (1 GiB, rounded up, for ≥ 2 s).
    let cost = b["cost_month_to_date"].as_i64().expect("cost_month_to_date");
    let (_, usage) = t.k.get("/v1/projects/demo/usage");
    let line = usage["items"].as_array().and_then(|l| l.iter().find(|l| l["resource"] == "site")).cloned();
    let billed = line.and_then(|l| l["cost"].as_i64()).unwrap_or_else(|| panic!("no line for site: {usage}"));
    assert!(cost >= 200 && (billed - cost).abs() <= 100, "bucket list says {cost}, usage {billed} (a second apart)");
    let (ok, out) = kumo("alice", &["bucket", "list", "--project", "demo"]);
    assert!(ok && out.contains("site") && out.contains("26 B") && out.contains("private"), "{out}");
    assert!(out.contains("COST (MONTH)"), "{out}");
    // Anonymous reads follow the switch; only owners flip it.
    let anon = format!("{}/site/index.html", t.endpoint);
    assert_eq!(reqwest::blocking::get(&anon).expect("GET").status().as_u16(), 403);
    let (ok, out) = kumo("victor", &["bucket", "update", "site", "--project", "demo", "--acl", "public-read"]);
    assert!(!ok, "a viewer made a bucket public: {out}");
    let (ok, out) = kumo("alice", &["bucket", "update", "site", "--project", "demo", "--acl", "public-read"]);
    assert!(ok && out.contains("public-read"), "{out}");
    let r = reqwest::blocking::get(&anon).expect("GET");
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.text().unwrap(), "<h1>site</h1>");
    // Versioning from the CLI (collaborators and owners, like S3's PutBucketVersioning).
    let (ok, out) = kumo("victor", &["bucket", "update", "site", "--project", "demo", "--versioning", "enabled"]);
    assert!(!ok, "a viewer turned versioning on: {out}");
    let (ok, out) = kumo("alice", &["bucket", "update", "site", "--project", "demo", "--versioning", "enabled"]);
    assert!(ok && out.contains("VERSIONING") && out.contains("enabled"), "{out}");
    let got = t.aws_ok(&["s3api", "get-bucket-versioning", "--bucket", "site"]);
    assert!(got.contains("Enabled"), "{got}");
    let (s, v) = t.k.send_put("/v1/buckets/site?project=demo", json!({}));
    assert_eq!(s, 400, "an update that changes nothing: {v}");
    let (ok, out) = kumo("alice", &["bucket", "delete", "site", "--project", "demo"]);
    assert!(!ok && out.contains("not empty"), "{out}");
    t.aws_ok(&["s3", "rm", "s3://site/", "--recursive"]);
    // Versioned: the objects are behind delete markers, their versions are still there.
    let (ok, out) = kumo("alice", &["bucket", "delete", "site", "--project", "demo"]);
    assert!(!ok && out.contains("not empty") && out.contains("versions"), "{out}");
    let listed: Value =
        serde_json::from_str(&t.aws_ok(&["s3api", "list-object-versions", "--bucket", "site"])).expect("json");
    let mut gone = 0;
    for entry in ["Versions", "DeleteMarkers"].iter().flat_map(|f| listed[f].as_array().cloned().unwrap_or_default()) {
        let (key, version) = (entry["Key"].as_str().expect("Key"), entry["VersionId"].as_str().expect("VersionId"));
        t.aws_ok(&["s3api", "delete-object", "--bucket", "site", "--key", key, "--version-id", version]);
        gone += 1;
    }
    assert_eq!(gone, 4, "two null versions and two delete markers: {listed}");
    let (ok, out) = kumo("alice", &["bucket", "delete", "site", "--project", "demo"]);
    assert!(ok, "{out}");
    let (ok, out) = kumo("alice", &["bucket", "view", "site", "--project", "demo"]);
    assert!(!ok && out.contains("not found"), "{out}");
}

#[test]
fn a_flipped_byte_on_disk_fails_the_read_instead_of_serving_wrong_data() {
    if clients().is_none() {
        return;
    }
    let t = tenants(&[]);
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("data.bin");
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(&file, &data).unwrap();
    t.aws_ok(&["s3", "mb", "s3://damage"]);
    t.aws_ok(&["s3api", "put-object", "--bucket", "damage", "--key", "d.bin", "--body", &file.to_string_lossy()]);
    t.aws_ok(&["s3api", "put-bucket-acl", "--bucket", "damage", "--acl", "public-read"]);
    let url = format!("{}/damage/d.bin", t.endpoint);
    let good = reqwest::blocking::get(&url).expect("GET").bytes().expect("whole body");
    assert!(good[..] == data[..], "the undamaged object reads back");
    let blobs = blob_files(t.k.data_dir());
    assert_eq!(blobs.len(), 1, "{blobs:?}");
    let mut bytes = std::fs::read(&blobs[0]).unwrap();
    bytes[1_234_567] ^= 0x10;
    std::fs::write(&blobs[0], bytes).unwrap();
    let damaged = reqwest::blocking::get(&url).expect("GET").bytes();
    assert!(damaged.is_err(), "a damaged object was served whole: {} bytes", damaged.map(|b| b.len()).unwrap_or(0));
    // Ranged reads check the 1 MiB blocks they touch: one within the damaged block fails, ranges
    // in other blocks read back right.
    let ranged = |range: &str| {
        let r =
            reqwest::blocking::Client::new().get(&url).header("Range", format!("bytes={range}")).send().expect("GET");
        (r.status().as_u16(), r.bytes())
    };
    let (status, body) = ranged("1234500-1234600");
    assert!(
        status >= 500 || body.is_err(),
        "a range of the damaged block was served: {status}, {:?} bytes",
        body.map(|b| b.len())
    );
    for (from, to) in [(100usize, 199usize), (2_500_000, 2_500_099)] {
        let (status, body) = ranged(&format!("{from}-{to}"));
        assert_eq!(status, 206);
        assert!(body.expect("body")[..] == data[from..=to], "bytes {from}-{to}");
    }
    let out = t.aws("owner", &["s3", "cp", "s3://damage/d.bin", &dir.path().join("back.bin").to_string_lossy()]);
    assert!(!out.status.success(), "the aws CLI copied a damaged object");
    assert!(t.k.log_tail(200).contains("CRC32C mismatch"), "the damage is logged");
}

#[test]
fn object_storage_is_metered_in_gib_months_on_the_usage_page() {
    if clients().is_none() {
        return;
    }
    let t = tenants(&[]);
    let (s, v) = t.k.send_put("/v1/system/prices", json!({"kind": "object_storage", "unit_price": "100.00"}));
    assert_eq!(s, 200, "{v}");
    let dir = tempfile::tempdir().expect("dir");
    let small = dir.path().join("small");
    std::fs::write(&small, vec![7u8; 4096]).unwrap();
    t.aws_ok(&["s3", "mb", "s3://metered"]);
    t.aws_ok(&["s3", "cp", &small.to_string_lossy(), "s3://metered/a"]);
    t.aws_ok(&["s3", "cp", &small.to_string_lossy(), "s3://metered/b"]);
    std::thread::sleep(Duration::from_millis(2500));
    t.aws_ok(&["s3", "rm", "s3://metered/", "--recursive"]);
    t.aws_ok(&["s3", "rb", "s3://metered"]);
    // created (0 B), resized to 1 GiB (rounded up) by the first PUT only, resized to 0 by the last
    // delete, deleted: whole GiB for the ~2.5 s the bucket held anything.
    let (_, v) = t.k.get("/v1/events?project=demo&limit=1000");
    let resized: Vec<&Value> = v["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["resource_type"] == "bucket" && e["kind"] == "resized")
        .collect();
    assert_eq!(resized.len(), 2, "one event per GiB crossed, not per PUT: {v}");
    let (s, usage) = t.k.get("/v1/projects/demo/usage");
    assert_eq!(s, 200, "{usage}");
    let line = usage["items"]
        .as_array()
        .and_then(|l| l.iter().find(|l| l["resource_type"] == "bucket"))
        .cloned()
        .unwrap_or_else(|| panic!("no bucket line: {usage}"));
    assert_eq!(
        (line["unit"].as_str(), line["unit_price"].as_str(), line["resource"].as_str()),
        (Some("GiB-second"), Some("100.00"), Some("metered")),
        "{line}"
    );
    let q = line["quantity"].as_i64().expect("quantity");
    assert!((2..=6).contains(&q), "1 GiB for ~2.5 s: {line}");
}

#[test]
fn requests_are_counted_per_bucket_and_billed_per_thousand_and_a_stop_keeps_the_last_counts() {
    if clients().is_none() {
        return;
    }
    let mut t = tenants(&[]);
    for (kind, price) in [("object_write_requests", "10.00"), ("object_read_requests", "1.00")] {
        let (s, v) = t.k.send_put("/v1/system/prices", json!({"kind": kind, "unit_price": price}));
        assert_eq!(s, 200, "{v}");
        assert_eq!(v["price_unit"], "1,000 requests", "{v}");
    }
    // Requests are counted per hour, each hour at the price in force at its start: the prices
    // were set two hours ago.
    t.k.kill9();
    common::with_store(&t.k, async |conn| {
        let then =
            (chrono::Utc::now() - chrono::Duration::hours(2)).to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
        sqlx::query("UPDATE prices SET effective_from = $1 WHERE kind LIKE 'object_%_requests'")
            .bind(&then)
            .execute(&mut *conn)
            .await
            .expect("back-date the prices");
    });
    t.k.restart();
    let addr = std::fs::read_to_string(t.k.data_dir().join("s3.addr")).expect("s3.addr");
    t.endpoint = format!("http://{}", addr.trim());
    t.boto3("requests", &[]);
    // Counts are flushed every 10 s and when kumod stops: stop it at once, they are all there.
    t.k.restart_gracefully();
    let (s, usage) = t.k.get("/v1/projects/demo/usage");
    assert_eq!(s, 200, "{usage}");
    let line = |kind: &str| {
        usage["items"]
            .as_array()
            .and_then(|l| l.iter().find(|l| l["price_kind"] == kind && l["resource"] == "req"))
            .cloned()
            .unwrap_or_else(|| panic!("no {kind} line: {usage}"))
    };
    let (w, r) = (line("object_write_requests"), line("object_read_requests"));
    // 20 PUTs and one DeleteObjects; 30 GETs, 10 HEADs, 5 listings (the refused GET is not billed).
    assert_eq!(
        (w["quantity"].as_i64(), w["unit"].as_str(), w["cost"].as_i64()),
        (Some(21), Some("request"), Some(21)),
        "{w}"
    );
    assert_eq!((r["quantity"].as_i64(), r["cost"].as_i64()), (Some(45), Some(5)), "{r}");
    assert_eq!(r["resource_type"], "bucket", "{r}");
}
