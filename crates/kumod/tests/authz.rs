//! Authorisation, proven for every operation, and the identity features it rests on (users,
//! login and its rate limit, API tokens, members, the audit log).
//!
//! `every_operation_is_authorised_as_its_table_says` reads the OpenAPI document the server serves
//! and calls every operation in it unauthenticated, as a member of another project and as a
//! viewer. What each operation must answer is in [`TABLE`]; an operation missing from the table
//! fails the test, so no operation ships without an authorisation decision.
//!
//! Adding an operation: add a row `("<operation_id>", Kind::…, "<query>", <body>)` to [`TABLE`].
//! Path parameters are filled from [`path_param`] (project `a` and its resources); the query and
//! body should make a request that would succeed if it were allowed, so a 403/404 proves the
//! authorisation check, not a validation error.

mod common;

use common::{Cloud, Kumod};
use reqwest::blocking::RequestBuilder;
use reqwest::Method;
use serde_json::{json, Value};
use std::time::Duration;

const IMAGE: &str = common::FIXTURE_IMAGE;
const WAIT: Duration = Duration::from_secs(20);
const PASSWORD: &str = "correct horse battery";

/// What an operation allows, by caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Needs no token (login).
    Public,
    /// Any authenticated user may call it (catalogues, who am I).
    AnyUser,
    /// The caller's own account (their API tokens): any user, on their own things.
    OwnAccount,
    /// Operators only: 403 for every tenant.
    Operator,
    /// Reads a project's things: members 2xx (viewers too), non-members 404.
    ProjectRead,
    /// Changes a project's things: collaborators and owners; viewers 403, non-members 404.
    ProjectWrite,
    /// Manages a project (members, budget): owners; viewers 403, non-members 404.
    ProjectManage,
    /// Operators only, about one project (its quotas): non-members 404, members 403.
    ProjectOperator,
    /// Reads a project's thing the fixture cannot make (the invoice of a closed month): members
    /// get past authorisation (not 401, 403, or the project's 404), non-members 404.
    ProjectReadUnmade,
}

/// Body of a request in the table.
#[derive(Debug, Clone, Copy)]
enum Body {
    None,
    Json(&'static str),
    /// The fixture qcow2 image (for image import).
    Image,
}

/// operation id → what it allows, query string (`a` is the project under test), body.
const TABLE: &[(&str, Kind, &str, Body)] = &[
    ("session_create", Kind::Public, "", Body::Json(r#"{"username":"bob","password":"correct horse battery"}"#)),
    ("me_view", Kind::AnyUser, "", Body::None),
    ("token_list", Kind::OwnAccount, "", Body::None),
    ("token_create", Kind::OwnAccount, "", Body::Json(r#"{"name":"ci2","expires_in_days":1}"#)),
    ("token_delete", Kind::OwnAccount, "", Body::None),
    ("project_list", Kind::AnyUser, "", Body::None),
    ("project_create", Kind::Operator, "", Body::Json(r#"{"name":"c"}"#)),
    ("project_view", Kind::ProjectRead, "", Body::None),
    ("project_delete", Kind::Operator, "", Body::None),
    ("member_list", Kind::ProjectRead, "", Body::None),
    ("member_add", Kind::ProjectManage, "", Body::Json(r#"{"user":"carol","role":"viewer"}"#)),
    ("member_remove", Kind::ProjectManage, "", Body::None),
    ("user_list", Kind::Operator, "", Body::None),
    ("user_create", Kind::Operator, "", Body::Json(r#"{"name":"dave","password":"correct horse battery"}"#)),
    ("user_view", Kind::Operator, "", Body::None),
    ("user_delete", Kind::Operator, "", Body::None),
    ("image_list", Kind::ProjectRead, "project=a", Body::None),
    ("image_import", Kind::ProjectWrite, "project=a&name=img-x", Body::Image),
    ("image_view", Kind::ProjectRead, "project=a", Body::None),
    ("image_delete", Kind::ProjectWrite, "project=a", Body::None),
    ("instance_type_list", Kind::AnyUser, "", Body::None),
    (
        "instance_type_create",
        Kind::Operator,
        "",
        Body::Json(r#"{"name":"k9-x","vcpus":1,"memory_mib":128,"disk_gib":1}"#),
    ),
    ("instance_type_view", Kind::AnyUser, "", Body::None),
    ("instance_type_delete", Kind::Operator, "", Body::None),
    ("instance_list", Kind::ProjectRead, "project=a", Body::None),
    (
        "instance_create",
        Kind::ProjectWrite,
        "project=a",
        Body::Json(r#"{"name":"vm-x","image":"fixture","instance_type":"k1-nano"}"#),
    ),
    ("instance_view", Kind::ProjectRead, "project=a", Body::None),
    ("instance_delete", Kind::ProjectWrite, "project=a", Body::None),
    ("instance_start", Kind::ProjectWrite, "project=a", Body::None),
    ("instance_stop", Kind::ProjectWrite, "project=a", Body::None),
    ("instance_reboot", Kind::ProjectWrite, "project=a", Body::None),
    ("instance_resize", Kind::ProjectWrite, "project=a", Body::Json(r#"{"instance_type":"k1-small"}"#)),
    ("instance_migrate", Kind::Operator, "project=a", Body::Json(r#"{}"#)),
    ("instance_serial_console", Kind::ProjectRead, "project=a", Body::None),
    ("instance_metrics", Kind::ProjectRead, "project=a&metric=cpu", Body::None),
    ("event_list", Kind::ProjectRead, "project=a", Body::None),
    // A never-ending stream: send() reads only its head (see there).
    ("event_stream", Kind::ProjectRead, "project=a", Body::None),
    ("host_list", Kind::Operator, "", Body::None),
    ("host_view", Kind::Operator, "", Body::None),
    ("host_cordon", Kind::Operator, "", Body::None),
    ("host_uncordon", Kind::Operator, "", Body::None),
    ("host_drain", Kind::Operator, "", Body::None),
    ("join_token_create", Kind::Operator, "", Body::Json(r#"{"zone":"default"}"#)),
    ("host_delete", Kind::Operator, "", Body::None),
    ("host_labels_set", Kind::Operator, "", Body::Json(r#"{"labels":{"disk":"ssd"}}"#)),
    ("zone_list", Kind::AnyUser, "", Body::None),
    ("zone_create", Kind::Operator, "", Body::Json(r#"{"name":"east"}"#)),
    ("zone_view", Kind::AnyUser, "", Body::None),
    ("reconciler_list", Kind::Operator, "", Body::None),
    ("audit_log_list", Kind::Operator, "", Body::None),
    // Quotas, prices, usage, invoices, budgets.
    ("quota_list", Kind::Operator, "", Body::None),
    ("quota_view", Kind::ProjectRead, "", Body::None),
    ("quota_update", Kind::ProjectOperator, "", Body::Json(r#"{"instances":10}"#)),
    ("price_list", Kind::Operator, "", Body::None),
    (
        "price_update",
        Kind::Operator,
        "",
        Body::Json(r#"{"kind":"instance_type","name":"k1-nano","unit_price":"0.012"}"#),
    ),
    ("usage_view", Kind::ProjectRead, "", Body::None),
    ("invoice_list", Kind::ProjectRead, "", Body::None),
    ("invoice_view", Kind::ProjectReadUnmade, "", Body::None),
    ("budget_view", Kind::ProjectRead, "", Body::None),
    ("budget_update", Kind::ProjectManage, "", Body::Json(r#"{"monthly":"50.00","alert_at_percent":80}"#)),
    // Volumes (vol-a is available in a; detach would be 409 if allowed: authorisation comes first).
    ("volume_list", Kind::ProjectRead, "project=a", Body::None),
    ("volume_create", Kind::ProjectWrite, "project=a", Body::Json(r#"{"name":"vol-x","size_gib":1}"#)),
    ("volume_view", Kind::ProjectRead, "project=a", Body::None),
    ("volume_delete", Kind::ProjectWrite, "project=a", Body::None),
    ("volume_attach", Kind::ProjectWrite, "project=a", Body::Json(r#"{"instance":"vm-a"}"#)),
    ("volume_detach", Kind::ProjectWrite, "project=a", Body::None),
    ("volume_resize", Kind::ProjectWrite, "project=a", Body::Json(r#"{"size_gib":2}"#)),
    ("snapshot_list", Kind::ProjectRead, "project=a", Body::None),
    ("snapshot_create", Kind::ProjectWrite, "project=a", Body::Json(r#"{"name":"snap-x","volume":"vol-a"}"#)),
    ("snapshot_view", Kind::ProjectRead, "project=a", Body::None),
    ("snapshot_delete", Kind::ProjectWrite, "project=a", Body::None),
    ("volume_backup_list", Kind::ProjectRead, "project=a", Body::None),
    ("volume_backup_create", Kind::ProjectWrite, "project=a", Body::Json(r#"{"name":"bk-x","volume":"vol-a"}"#)),
    ("volume_backup_view", Kind::ProjectRead, "project=a", Body::None),
    ("volume_backup_delete", Kind::ProjectWrite, "project=a", Body::None),
    (
        "volume_io_limits_update",
        Kind::ProjectWrite,
        "project=a",
        Body::Json(r#"{"iops_limit":100,"bandwidth_limit_mib_s":null}"#),
    ),
    ("image_create", Kind::ProjectWrite, "project=a", Body::Json(r#"{"name":"img-x","source_snapshot":"snap-a"}"#)),
    ("image_export", Kind::ProjectRead, "project=a", Body::None),
    // Tenant networking.
    ("vpc_list", Kind::ProjectRead, "project=a", Body::None),
    ("vpc_create", Kind::ProjectWrite, "project=a", Body::Json(r#"{"name":"vpc-x","ipv4_cidr":"10.20.0.0/16"}"#)),
    ("vpc_view", Kind::ProjectRead, "project=a", Body::None),
    ("vpc_delete", Kind::ProjectWrite, "project=a", Body::None),
    ("vpc_subnet_list", Kind::ProjectRead, "project=a&vpc=default", Body::None),
    (
        "vpc_subnet_create",
        Kind::ProjectWrite,
        "project=a&vpc=default",
        Body::Json(r#"{"name":"sn-x","ipv4_cidr":"10.0.64.0/24"}"#),
    ),
    ("vpc_subnet_view", Kind::ProjectRead, "project=a&vpc=default", Body::None),
    ("vpc_subnet_delete", Kind::ProjectWrite, "project=a&vpc=default", Body::None),
    ("security_group_list", Kind::ProjectRead, "project=a", Body::None),
    ("security_group_create", Kind::ProjectWrite, "project=a", Body::Json(r#"{"name":"sg-x"}"#)),
    ("security_group_view", Kind::ProjectRead, "project=a", Body::None),
    ("security_group_delete", Kind::ProjectWrite, "project=a", Body::None),
    ("security_group_rules_view", Kind::ProjectRead, "project=a", Body::None),
    (
        "security_group_rules_update",
        Kind::ProjectWrite,
        "project=a",
        Body::Json(r#"{"rules":[{"direction":"ingress","protocol":"tcp","port_range":"80","source":"0.0.0.0/0"}]}"#),
    ),
    ("ssh_key_list", Kind::ProjectRead, "project=a", Body::None),
    ("ssh_key_create", Kind::ProjectWrite, "project=a", Body::Json(SSH_KEY_X)),
    ("ssh_key_view", Kind::ProjectRead, "project=a", Body::None),
    ("ssh_key_delete", Kind::ProjectWrite, "project=a", Body::None),
    ("floating_ip_list", Kind::ProjectRead, "project=a", Body::None),
    ("floating_ip_create", Kind::ProjectWrite, "project=a", Body::Json(r#"{"name":"fip-x"}"#)),
    ("floating_ip_view", Kind::ProjectRead, "project=a", Body::None),
    ("floating_ip_delete", Kind::ProjectWrite, "project=a", Body::None),
    ("floating_ip_attach", Kind::ProjectWrite, "project=a", Body::Json(r#"{"instance":"vm-a"}"#)),
    ("floating_ip_detach", Kind::ProjectWrite, "project=a", Body::None),
    // Placement.
    ("placement_group_list", Kind::ProjectRead, "project=a", Body::None),
    ("placement_group_create", Kind::ProjectWrite, "project=a", Body::Json(r#"{"name":"pg-x","policy":"spread"}"#)),
    ("placement_group_view", Kind::ProjectRead, "project=a", Body::None),
    ("placement_group_delete", Kind::ProjectWrite, "project=a", Body::None),
    // S3 access keys: any member (a viewer too) makes their own; ak-a is alice's, so deleting it
    // is for her or an owner (bob, a viewer, gets 403; deleting his own is tested in api.rs).
    ("access_key_list", Kind::ProjectRead, "project=a", Body::None),
    ("access_key_create", Kind::ProjectRead, "project=a", Body::Json(r#"{"name":"ak-x"}"#)),
    ("access_key_view", Kind::ProjectRead, "project=a", Body::None),
    ("access_key_delete", Kind::ProjectManage, "project=a", Body::None),
    // Buckets: members see them, collaborators make and delete them, owners make them public.
    ("bucket_list", Kind::ProjectRead, "project=a", Body::None),
    ("bucket_create", Kind::ProjectWrite, "project=a", Body::Json(r#"{"name":"bucket-x"}"#)),
    ("bucket_view", Kind::ProjectRead, "project=a", Body::None),
    ("bucket_update", Kind::ProjectManage, "project=a", Body::Json(r#"{"public_read":true}"#)),
    ("bucket_delete", Kind::ProjectWrite, "project=a", Body::None),
];

const SSH_KEY_X: &str = r#"{"name":"key-x","public_key":"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAABAgMEBQYHCAkKCwwNDg8QERITFBUWFxgZGhscHR4f x"}"#;

/// Values of path parameters: project `a` and its resources.
fn path_param(name: &str) -> &'static str {
    match name {
        "project" => "a",
        "instance" => "vm-a",
        "image" => "img-a",
        "instance_type" => "k1-nano",
        "host" => "test-host",
        "zone" => "default",
        "user" => "bob",
        "token" => "ci",
        // A closed month (invoices).
        "period" => "2026-10",
        "volume" => "vol-a",
        "snapshot" => "snap-a",
        "backup" => "bk-a",
        "vpc" | "subnet" | "security_group" => "default",
        "ssh_key" => "key-a",
        "floating_ip" => "fip-a",
        "placement_group" => "pg-a",
        "access_key" => "ak-a",
        "bucket" => "bucket-a",
        other => panic!("no value for path parameter {{{other}}}: add one to path_param()"),
    }
}

/// A kumod on the sim driver with the fixture image and a named host.
fn cloud() -> Cloud {
    common::cloud(&[
        "--host-name",
        "test-host",
        "--host-vcpus",
        "16",
        "--host-memory-mib",
        "16384",
        "--host-disk-gib",
        "500",
        "--public-ip-pool",
        "198.51.100.0/24",
    ])
}

/// Sends a request; returns status, the Retry-After header, and the body (JSON, or a string).
fn send(req: RequestBuilder) -> (u16, Option<String>, Value) {
    let resp = req.send().expect("request");
    let status = resp.status().as_u16();
    let retry = resp.headers().get("retry-after").and_then(|h| h.to_str().ok()).map(String::from);
    // A live stream (server-sent events) never ends: its status is the answer.
    let ct = resp.headers().get("content-type").and_then(|h| h.to_str().ok()).unwrap_or("");
    if ct.starts_with("text/event-stream") {
        return (status, retry, Value::String("(event stream)".into()));
    }
    let text = resp.text().unwrap_or_default();
    (status, retry, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

/// Requests as one caller (None: no credentials).
struct As<'a> {
    k: &'a Kumod,
    token: Option<String>,
}

impl As<'_> {
    fn req(&self, method: Method, path: &str) -> RequestBuilder {
        let r = self.k.http.request(method, format!("{}{path}", self.k.url));
        match &self.token {
            Some(t) => r.bearer_auth(t),
            None => r,
        }
    }
    fn get(&self, path: &str) -> (u16, Value) {
        let (s, _, v) = send(self.req(Method::GET, path));
        (s, v)
    }
    fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let (s, _, v) = send(self.req(Method::POST, path).json(&body));
        (s, v)
    }
    fn put(&self, path: &str, body: Value) -> (u16, Value) {
        let (s, _, v) = send(self.req(Method::PUT, path).json(&body));
        (s, v)
    }
    fn delete(&self, path: &str) -> (u16, Value) {
        let (s, _, v) = send(self.req(Method::DELETE, path));
        (s, v)
    }
}

fn login(k: &Kumod, user: &str, password: &str) -> (u16, Option<String>, Value) {
    send(k.http.post(format!("{}/v1/login", k.url)).json(&json!({"username": user, "password": password})))
}

fn create_user(k: &Kumod, name: &str) {
    let (s, v) = k.post("/v1/users", json!({"name": name, "password": PASSWORD}));
    assert_eq!(s, 201, "{v}");
}

/// Logs in and returns a session token.
fn session(k: &Kumod, user: &str) -> String {
    let (s, _, v) = login(k, user, PASSWORD);
    assert_eq!(s, 200, "login as {user}: {v}");
    v["token"].as_str().expect("token").to_string()
}

fn add_member(k: &Kumod, project: &str, user: &str, role: &str) {
    let (s, v) = k.post(&format!("/v1/projects/{project}/members"), json!({"user": user, "role": role}));
    assert_eq!(s, 201, "{v}");
}

/// Projects `a` and `b`; alice owns a, bob views a, carol collaborates on b; a running instance
/// `vm-a` and an image `img-a` in a. Returns the session tokens of alice, bob and carol.
fn tenants(k: &Cloud) -> [String; 3] {
    k.create_project("a");
    k.create_project("b");
    for u in ["alice", "bob", "carol"] {
        create_user(k, u);
    }
    add_member(k, "a", "alice", "owner");
    add_member(k, "a", "bob", "viewer");
    add_member(k, "b", "carol", "collaborator");
    let [alice, bob, carol] = ["alice", "bob", "carol"].map(|u| session(k, u));
    let as_alice = As { k, token: Some(alice.clone()) };
    let (s, v) =
        as_alice.post("/v1/instances?project=a", json!({"name": "vm-a", "image": IMAGE, "instance_type": "k1-nano"}));
    assert_eq!(s, 202, "alice creates an instance in her project: {v}");
    let (s, _, v) = send(
        as_alice
            .req(Method::POST, "/v1/images/import?project=a&name=img-a")
            .header("content-type", "application/octet-stream")
            .body(k.fixture_bytes()),
    );
    assert_eq!(s, 201, "alice imports an image into her project: {v}");
    let (s, v) = as_alice.post("/v1/volumes?project=a", json!({"name": "vol-a", "size_gib": 1}));
    assert_eq!(s, 202, "alice creates a volume in her project: {v}");
    let deadline = std::time::Instant::now() + WAIT;
    while as_alice.get("/v1/volumes/vol-a?project=a").1["state"] != "available" {
        assert!(std::time::Instant::now() < deadline, "vol-a did not become available");
        std::thread::sleep(Duration::from_millis(20));
    }
    let (s, v) = as_alice.post("/v1/snapshots?project=a", json!({"name": "snap-a", "volume": "vol-a"}));
    assert_eq!(s, 201, "alice snapshots her volume: {v}");
    let (s, v) = as_alice.post("/v1/volume-backups?project=a", json!({"name": "bk-a", "volume": "vol-a"}));
    assert_eq!(s, 201, "alice backs up her volume: {v}");
    let operator = As { k, token: Some(k.token.clone()) };
    let (s, v) = operator.put("/v1/projects/a/budget", json!({"monthly": "50.00", "alert_at_percent": 80}));
    assert_eq!(s, 200, "a budget for a: {v}");
    let (s, v) = as_alice.post("/v1/floating-ips?project=a", json!({"name": "fip-a"}));
    assert_eq!(s, 201, "a floating ip in a: {v}");
    let key = SSH_KEY_X.replace("key-x", "key-a");
    let (s, v) = as_alice.post("/v1/ssh-keys?project=a", serde_json::from_str(&key).expect("json"));
    assert_eq!(s, 201, "an ssh key in a: {v}");
    let (s, v) = as_alice.post("/v1/placement-groups?project=a", json!({"name": "pg-a", "policy": "spread"}));
    assert_eq!(s, 201, "a placement group in a: {v}");
    let (s, v) = as_alice.post("/v1/access-keys?project=a", json!({"name": "ak-a"}));
    assert_eq!(s, 201, "alice's access key in a: {v}");
    let (s, v) = as_alice.post("/v1/buckets?project=a", json!({"name": "bucket-a"}));
    assert_eq!(s, 201, "alice's bucket in a: {v}");
    k.wait_state("a", "vm-a", "running", WAIT);
    [alice, bob, carol]
}

/// Every operation of the OpenAPI document: (method, path template, operation id).
fn operations(k: &Kumod) -> Vec<(String, String, String)> {
    let (s, _, doc) = send(k.http.get(format!("{}/v1/openapi.json", k.url)));
    assert_eq!(s, 200, "{doc}");
    let mut ops = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("path item") {
            let id = op["operationId"].as_str().expect("operationId").to_string();
            ops.push((method.to_uppercase(), path.clone(), id));
        }
    }
    assert!(ops.len() > 30, "suspiciously few operations: {ops:?}");
    ops
}

/// Fills `{param}`s of a path template.
fn fill(template: &str) -> String {
    let mut out = String::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let close = rest[open..].find('}').expect("unclosed {") + open;
        out.push_str(path_param(&rest[open + 1..close]));
        rest = &rest[close + 1..];
    }
    out.push_str(rest);
    out
}

#[test]
fn every_operation_is_authorised_as_its_table_says() {
    let k = cloud();
    let [_alice, bob, carol] = tenants(&k);
    let bob = As { k: &k, token: Some(bob) };
    let carol = As { k: &k, token: Some(carol) };
    let nobody = As { k: &k, token: None };
    // Own-account operations act on a token named `ci`; give bob and carol one.
    for who in [&bob, &carol] {
        let (s, v) = who.post("/v1/me/tokens", json!({"name": "ci"}));
        assert_eq!(s, 201, "{v}");
    }

    let ops = operations(&k);
    let missing: Vec<&str> =
        ops.iter().filter(|(_, _, id)| !TABLE.iter().any(|(t, ..)| t == id)).map(|(_, _, id)| id.as_str()).collect();
    assert!(
        missing.is_empty(),
        "operations without an authorisation expectation: {missing:?}; add them to TABLE in {}",
        file!()
    );
    let stale: Vec<&str> = TABLE.iter().map(|(t, ..)| *t).filter(|t| !ops.iter().any(|(_, _, id)| id == t)).collect();
    assert!(stale.is_empty(), "TABLE names operations the API does not have: {stale:?}");

    let mut failures = Vec::new();
    for (method, template, id) in &ops {
        let (_, kind, query, body) = TABLE.iter().find(|(t, ..)| t == id).copied().expect("checked above");
        let method: Method = method.parse().expect("method");
        let mut path = fill(template);
        if !query.is_empty() {
            path = format!("{path}?{query}");
        }
        let call = |who: &As| {
            let req = who.req(method.clone(), &path);
            let req = match body {
                Body::None => req,
                Body::Json(j) => req.header("content-type", "application/json").body(j),
                Body::Image => req.header("content-type", "application/octet-stream").body(k.fixture_bytes()),
            };
            let (s, _, v) = send(req);
            (s, v)
        };
        let mut expect = |who: &str, (s, v): (u16, Value), ok: &dyn Fn(u16, &Value) -> bool, want: &str| {
            if !ok(s, &v) {
                failures.push(format!("{id} ({method} {path}) as {who}: got {s}, want {want}: {v}"));
            }
        };
        let success = |s: u16, _: &Value| (200..300).contains(&s);
        let is = |code: u16| move |s: u16, _: &Value| s == code;
        // Unauthenticated.
        match kind {
            Kind::Public => expect("nobody", call(&nobody), &success, "2xx without a token"),
            _ => expect("nobody", call(&nobody), &is(401), "401"),
        }
        // A member of another project (carol, collaborator of b).
        match kind {
            Kind::Public => {}
            Kind::AnyUser | Kind::OwnAccount => expect("carol", call(&carol), &success, "2xx"),
            Kind::Operator => expect("carol", call(&carol), &is(403), "403"),
            Kind::ProjectRead
            | Kind::ProjectWrite
            | Kind::ProjectManage
            | Kind::ProjectOperator
            | Kind::ProjectReadUnmade => {
                expect("carol", call(&carol), &is(404), "404 (she may not learn that a exists)")
            }
        }
        // A viewer of the project.
        match kind {
            Kind::Public => {}
            Kind::AnyUser | Kind::OwnAccount | Kind::ProjectRead => expect("bob", call(&bob), &success, "2xx"),
            Kind::Operator | Kind::ProjectWrite | Kind::ProjectManage | Kind::ProjectOperator => {
                expect("bob", call(&bob), &is(403), "403")
            }
            Kind::ProjectReadUnmade => {
                let past_authorisation = |s: u16, v: &Value| {
                    let project_404 = s == 404 && v["message"] == "project 'a' not found";
                    !matches!(s, 401 | 403) && !project_404 && s < 500
                };
                expect("bob", call(&bob), &past_authorisation, "past authorisation (not 401, 403 or the project's 404)")
            }
        }
    }
    assert!(failures.is_empty(), "{} authorisation failures:\n{}", failures.len(), failures.join("\n"));

    // Nothing the refused calls asked for happened.
    let (s, v) = k.get("/v1/instances/vm-a?project=a");
    assert_eq!((s, v["state"].as_str()), (200, Some("running")), "{v}");
    let (s, v) = k.get("/v1/projects/c");
    assert_eq!(s, 404, "{v}");
    let (s, v) = k.get("/v1/volumes/vol-a?project=a");
    assert_eq!((s, v["state"].as_str(), v["size_gib"].as_i64()), (200, Some("available"), Some(1)), "{v}");
    let (s, v) = k.get("/v1/volumes/vol-x?project=a");
    assert_eq!(s, 404, "{v}");
    let (s, v) = k.get("/v1/snapshots/snap-a?project=a");
    assert_eq!(s, 200, "{v}");
    let (s, v) = k.get("/v1/volume-backups/bk-a?project=a");
    assert_eq!(s, 200, "{v}");
    assert_eq!(k.get("/v1/volume-backups/bk-x?project=a").0, 404);
    let (s, v) = k.get("/v1/users/dave");
    assert_eq!(s, 404, "{v}");
    let (s, v) = k.get("/v1/access-keys/ak-a?project=a");
    assert_eq!((s, &v["user"]), (200, &json!("alice")), "refused deletes left alice's key: {v}");
    let (s, v) = k.get("/v1/access-keys/ak-x?project=a");
    assert_eq!((s, &v["user"]), (200, &json!("bob")), "the viewer's own key is his: {v}");
    let (s, v) = k.get("/v1/buckets/bucket-a?project=a");
    assert_eq!((s, &v["public_read"]), (200, &json!(false)), "refused calls left the bucket as it was: {v}");
    assert_eq!(k.get("/v1/buckets/bucket-x?project=a").0, 404);
}

#[test]
fn tenants_see_only_their_projects_and_no_hosts() {
    let k = cloud();
    let [alice, bob, carol] = tenants(&k);
    let names = |token: &str| {
        let (s, v) = As { k: &k, token: Some(token.to_string()) }.get("/v1/projects");
        assert_eq!(s, 200, "{v}");
        v["items"]
            .as_array()
            .expect("items")
            .iter()
            .map(|p| p["name"].as_str().unwrap_or("").to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(names(&alice), ["a"]);
    assert_eq!(names(&bob), ["a"]);
    assert_eq!(names(&carol), ["b"]);
    assert_eq!(names(&k.token), ["a", "b"], "operators see every project");

    let alice = As { k: &k, token: Some(alice) };
    let (s, v) = alice.get("/v1/instances/vm-a?project=a");
    assert_eq!(s, 200, "{v}");
    assert!(v["host"].is_null(), "tenants must not see hosts: {v}");
    let (s, v) = k.get("/v1/instances/vm-a?project=a");
    assert!(s == 200 && v["host"].is_string(), "operators see the host: {v}");
    let (s, v) = alice.get("/v1/instances?project=a");
    assert!(s == 200 && v["items"][0]["host"].is_null(), "{v}");
    assert_eq!(alice.get("/v1/hosts").0, 403);
    // Zones: tenants list them (to choose one) but not their hosts' capacity.
    let (s, v) = alice.get("/v1/zones");
    assert_eq!((s, &v["items"][0]["name"]), (200, &json!("default")), "{v}");
    assert!(v["items"][0].get("hosts").is_none() && v["items"][0].get("vcpus_limit").is_none(), "{v}");
    let (s, v) = alice.get("/v1/zones/default");
    assert!(s == 200 && v.get("memory_mib_used").is_none(), "{v}");
    let (s, v) = k.get("/v1/zones/default");
    assert!(s == 200 && v["hosts"] == json!(1) && v["vcpus_limit"].is_i64(), "operators see the capacity: {v}");

    // Who am I: the user and their projects with roles.
    let (s, v) = alice.get("/v1/me");
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        (v["kind"].as_str(), v["user"].as_str(), v["operator"].as_bool()),
        (Some("user"), Some("alice"), Some(false))
    );
    assert_eq!(v["projects"], json!([{"id": v["projects"][0]["id"], "name": "a", "role": "owner"}]), "{v}");
}

#[test]
fn login_is_rate_limited_and_says_the_same_for_unknown_users() {
    let k = cloud();
    create_user(&k, "alice");
    let (s, _, unknown) = login(&k, "nobody", "whatever-password");
    let (s2, _, wrong) = login(&k, "alice", "wrong password");
    assert_eq!((s, s2), (401, 401), "{unknown} {wrong}");
    assert_eq!(unknown["message"], wrong["message"], "the answer must not tell whether the user exists");
    assert_eq!(wrong["error_code"], "Unauthenticated");
    for i in 2..=5 {
        let (s, _, v) = login(&k, "alice", "wrong password");
        assert_eq!(s, 401, "attempt {i}: {v}");
    }
    // Five failures for alice from this address: even the right password is refused for a while
    // (from here; see behind_a_trusted_proxy_one_clients_failures_do_not_block_another).
    let (s, retry, v) = login(&k, "alice", PASSWORD);
    assert_eq!(s, 429, "{v}");
    assert_eq!(v["error_code"], "TooManyRequests", "{v}");
    let secs: u64 = retry.as_deref().and_then(|r| r.parse().ok()).expect("a Retry-After header in seconds");
    assert!((1..=300).contains(&secs), "Retry-After {secs}");
    // Other operations are not affected.
    assert_eq!(k.get("/v1/me").0, 200);
}

/// Logs in through a proxy that says it forwards `client` (X-Forwarded-For).
fn login_via(k: &Kumod, client: &str, user: &str, password: &str) -> (u16, Option<String>, Value) {
    send(
        k.http
            .post(format!("{}/v1/login", k.url))
            .header("x-forwarded-for", client)
            .json(&json!({"username": user, "password": password})),
    )
}

/// The source address the audit log recorded for the last `session_create` with this status.
fn last_login_source(k: &Kumod, status: u16) -> String {
    let (s, v) = k.get("/v1/system/audit-log?operation=session_create&limit=1000");
    assert_eq!(s, 200, "{v}");
    let items = v["items"].as_array().expect("items");
    let e = items.iter().rev().find(|e| e["status"] == status).unwrap_or_else(|| panic!("no login {status}: {v}"));
    e["source_address"].as_str().unwrap_or("").to_string()
}

#[test]
fn behind_a_trusted_proxy_one_clients_failures_do_not_block_another() {
    // The test client is the proxy (loopback); the clients are what it forwards.
    let k = Kumod::sim(&["--trusted-proxy", "127.0.0.1/32", "--trusted-proxy", "::1/128"]);
    create_user(&k, "alice");
    create_user(&k, "bob");
    for i in 0..5 {
        let (s, _, v) = login_via(&k, "203.0.113.1", "alice", "wrong password");
        assert_eq!(s, 401, "attempt {i}: {v}");
        // A forged first entry does not change who the proxy says the client is.
        let (s, _, v) = login_via(&k, &format!("192.0.2.{i}, 203.0.113.1"), "bob", "wrong password");
        assert_eq!(s, 401, "attempt {i}: {v}");
    }
    let (s, retry, v) = login_via(&k, "203.0.113.1", "alice", PASSWORD);
    assert_eq!(s, 429, "client A used up its attempts for alice: {v}");
    assert!(retry.is_some(), "Retry-After");
    assert_eq!(login_via(&k, "192.0.2.77, 203.0.113.1", "bob", PASSWORD).0, 429, "forged entries are ignored");
    assert_eq!(last_login_source(&k, 429), "203.0.113.1");
    // Client B, behind the same proxy, is not blocked: for alice, for bob, or anyone.
    let (s, _, v) = login_via(&k, "203.0.113.2", "alice", PASSWORD);
    assert_eq!(s, 200, "client B must not be locked out by client A: {v}");
    assert_eq!(last_login_source(&k, 200), "203.0.113.2", "the audit log names the forwarded client");
    assert_eq!(login_via(&k, "203.0.113.2", "bob", PASSWORD).0, 200);
    // And the proxy's own address (no header) is a client like any other.
    assert_eq!(login(&k, "alice", PASSWORD).0, 200);
}

#[test]
fn forwarded_headers_from_an_untrusted_peer_are_ignored() {
    // Only 10.0.0.0/8 is a proxy: the loopback client's headers are its own claims.
    let k = Kumod::sim(&["--trusted-proxy", "10.0.0.0/8"]);
    create_user(&k, "alice");
    for i in 0..5 {
        let (s, _, v) = login_via(&k, &format!("203.0.113.{i}"), "alice", "wrong password");
        assert_eq!(s, 401, "attempt {i}: {v}");
    }
    // Claiming yet another address does not escape the limit: the source is the peer.
    let (s, _, v) = login_via(&k, "203.0.113.99", "alice", PASSWORD);
    assert_eq!(s, 429, "a forged X-Forwarded-For must not reset the limit: {v}");
    assert_eq!(last_login_source(&k, 429), "127.0.0.1");
    let (s, v) = k.get("/v1/system/audit-log?operation=session_create&limit=1000");
    assert!(s == 200 && !v.to_string().contains("203.0.113."), "forged addresses must not be logged: {v}");
}

#[test]
fn an_operator_can_log_in_after_someone_else_hammered_their_name() {
    let k = Kumod::sim(&["--trusted-proxy", "127.0.0.1/32"]);
    let (s, v) = k.post("/v1/users", json!({"name": "root", "password": PASSWORD, "operator": true}));
    assert_eq!(s, 201, "{v}");
    let home = "198.51.100.7";
    assert_eq!(login_via(&k, home, "root", PASSWORD).0, 200, "the operator's usual address");
    // Someone hammers the name from one address, then spreads the guessing over many.
    for i in 0..5 {
        assert_eq!(login_via(&k, "203.0.113.66", "root", "guess").0, 401, "attempt {i}");
    }
    assert_eq!(login_via(&k, "203.0.113.66", "root", "guess").0, 429);
    let (s, _, v) = login_via(&k, home, "root", PASSWORD);
    assert_eq!(s, 200, "the operator still gets in from their own address: {v}");
    let (s, _, v) = login_via(&k, "192.0.2.10", "root", PASSWORD);
    assert_eq!(s, 200, "and from a new address, while the name is not under a spread-out attack: {v}");
    for i in 0..45 {
        let (s, _, v) = login_via(&k, &format!("10.66.{}.{}", i / 5, i % 5 + 1), "root", "guess");
        assert!(matches!(s, 401 | 429), "attempt {i}: {v}");
    }
    // 50 failures on the name from all over: unfamiliar sources are refused, even with the password...
    let (s, _, v) = login_via(&k, "192.0.2.200", "root", PASSWORD);
    assert_eq!(s, 429, "an unfamiliar source during a spread-out attack: {v}");
    // ...but the operator's familiar addresses are not.
    let (s, _, v) = login_via(&k, home, "root", PASSWORD);
    assert_eq!(s, 200, "the operator is never locked out by name alone: {v}");
    assert_eq!(login_via(&k, "192.0.2.10", "root", PASSWORD).0, 200);
}

#[test]
fn sessions_and_api_tokens_work_and_revocation_is_immediate() {
    let k = cloud();
    create_user(&k, "alice");
    let (s, _, v) = login(&k, "alice", PASSWORD);
    assert_eq!(s, 200, "{v}");
    let expires = chrono::DateTime::parse_from_rfc3339(v["expires_at"].as_str().expect("expires_at")).expect("time");
    let hours = (expires.with_timezone(&chrono::Utc) - chrono::Utc::now()).num_minutes() as f64 / 60.0;
    assert!((11.9..=12.0).contains(&hours), "sessions last 12 h, got {hours}");
    let alice = As { k: &k, token: Some(v["token"].as_str().expect("token").to_string()) };

    let (s, v) = alice.post("/v1/me/tokens", json!({"name": "ci", "expires_in_days": 30}));
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["name"], "ci");
    let secret = v["token"].as_str().expect("secret").to_string();
    assert!(v["expires_at"].is_string(), "{v}");
    let (s, dup) = alice.post("/v1/me/tokens", json!({"name": "ci"}));
    assert_eq!((s, dup["error_code"].as_str()), (409, Some("ObjectAlreadyExists")), "{dup}");
    assert_eq!(alice.post("/v1/me/tokens", json!({"name": "x", "expires_in_days": 0})).0, 400);

    let ci = As { k: &k, token: Some(secret.clone()) };
    let (s, v) = ci.get("/v1/me");
    assert_eq!((s, v["user"].as_str(), v["token_name"].as_str()), (200, Some("alice"), Some("ci")), "{v}");
    let (s, v) = alice.get("/v1/me/tokens");
    assert_eq!(s, 200, "{v}");
    let list = v.as_array().expect("a list");
    assert_eq!(list.len(), 1, "{v}");
    assert_eq!(list[0]["name"], "ci");
    assert!(list[0]["last_used"].is_string(), "used once already: {v}");
    assert!(!v.to_string().contains(&secret), "the secret must never be listed: {v}");

    // Revoked: refused at once, although the token was just used (and cached).
    assert_eq!(alice.delete("/v1/me/tokens/ci").0, 204);
    assert_eq!(ci.get("/v1/me").0, 401, "a revoked token must stop working at once");
    assert_eq!(alice.delete("/v1/me/tokens/ci").0, 404);
    // The name is free again.
    assert_eq!(alice.post("/v1/me/tokens", json!({"name": "ci"})).0, 201);

    // The bootstrap operator token has no user, hence no tokens.
    assert_eq!(k.get("/v1/me/tokens").0, 403);

    // Deleting a user revokes their sessions and tokens at once.
    assert_eq!(alice.get("/v1/me").0, 200);
    assert_eq!(k.delete("/v1/users/alice").0, 204);
    assert_eq!(alice.get("/v1/me").0, 401);
    assert_eq!(login(&k, "alice", PASSWORD).0, 401);
}

#[test]
fn users_are_validated_and_operators_can_make_operators() {
    let k = cloud();
    let (s, v) = k.post("/v1/users", json!({"name": "alice", "password": "short"}));
    assert_eq!((s, v["error_code"].as_str()), (400, Some("InvalidValue")), "{v}");
    assert!(v["message"].as_str().unwrap_or("").contains("at least 8"), "{v}");
    assert_eq!(k.post("/v1/users", json!({"name": "Alice", "password": PASSWORD})).0, 400);
    let (s, v) = k.post("/v1/users", json!({"name": "root", "password": PASSWORD, "operator": true}));
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["operator"], true);
    for field in ["id", "name", "description", "time_created", "time_modified"] {
        assert!(!v[field].is_null(), "{field} missing: {v}");
    }
    assert!(!v.to_string().contains("argon2"), "the hash must not leak: {v}");
    assert_eq!(k.post("/v1/users", json!({"name": "root", "password": PASSWORD})).0, 409);

    let root = As { k: &k, token: Some(session(&k, "root")) };
    let (s, v) = root.get("/v1/me");
    assert_eq!((s, v["kind"].as_str()), (200, Some("operator")), "{v}");
    assert_eq!(root.get("/v1/hosts").0, 200, "a user flagged operator is an operator");
    let (s, v) = root.post("/v1/users", json!({"name": "bob", "password": PASSWORD}));
    assert_eq!((s, v["operator"].as_bool()), (201, Some(false)), "{v}");
    let (s, v) = k.get("/v1/users");
    let names: Vec<&str> = v["items"].as_array().expect("items").iter().filter_map(|u| u["name"].as_str()).collect();
    assert_eq!((s, names), (200, vec!["bob", "root"]));
    assert_eq!(root.delete("/v1/users/root").0, 409, "operators cannot delete themselves");
}

#[test]
fn owners_manage_members_and_roles_take_effect() {
    let k = cloud();
    let [alice, bob, carol] = tenants(&k);
    let alice = As { k: &k, token: Some(alice) };
    let bob = As { k: &k, token: Some(bob) };
    let carol = As { k: &k, token: Some(carol) };
    // The owner makes bob a collaborator: he may now create instances but not manage members.
    let (s, v) = alice.post("/v1/projects/a/members", json!({"user": "bob", "role": "collaborator"}));
    assert_eq!((s, v["role"].as_str(), v["user"].as_str()), (201, Some("collaborator"), Some("bob")), "{v}");
    let (s, v) =
        bob.post("/v1/instances?project=a", json!({"name": "vm-b", "image": IMAGE, "instance_type": "k1-nano"}));
    assert_eq!(s, 202, "{v}");
    assert_eq!(bob.post("/v1/projects/a/members", json!({"user": "carol", "role": "owner"})).0, 403);
    assert_eq!(alice.post("/v1/projects/a/members", json!({"user": "nobody", "role": "viewer"})).0, 400);
    assert_eq!(alice.post("/v1/projects/a/members", json!({"user": "bob", "role": "boss"})).0, 400);
    // The owner adds carol; she sees a now; removed, she no longer does.
    assert_eq!(alice.post("/v1/projects/a/members", json!({"user": "carol", "role": "viewer"})).0, 201);
    assert_eq!(carol.get("/v1/projects/a").0, 200);
    let (s, v) = bob.get("/v1/projects/a/members");
    let members: Vec<(&str, &str)> = v
        .as_array()
        .expect("list")
        .iter()
        .map(|m| (m["user"].as_str().unwrap_or(""), m["role"].as_str().unwrap_or("")))
        .collect();
    assert_eq!((s, members), (200, vec![("alice", "owner"), ("bob", "collaborator"), ("carol", "viewer")]));
    assert_eq!(alice.delete("/v1/projects/a/members/carol").0, 204);
    assert_eq!(carol.get("/v1/projects/a").0, 404);
    assert_eq!(alice.delete("/v1/projects/a/members/carol").0, 404);
}

#[test]
fn the_audit_log_records_every_mutation_with_who_what_and_result() {
    let k = cloud();
    let [alice, _bob, _carol] = tenants(&k);
    let alice = As { k: &k, token: Some(alice) };
    let nobody = As { k: &k, token: None };
    assert_eq!(
        alice.post("/v1/instances?project=b", json!({"name": "x", "image": IMAGE, "instance_type": "k1-nano"})).0,
        404
    );
    assert_eq!(nobody.delete("/v1/projects/a").0, 401);
    assert_eq!(login(&k, "alice", "a wrong password").0, 401);
    assert_eq!(alice.get("/v1/projects").0, 200, "reads are not audited");

    let (s, v) = k.get("/v1/system/audit-log?since=1h&limit=1000");
    assert_eq!(s, 200, "{v}");
    let items = v["items"].as_array().expect("items").clone();
    let find = |op: &str, status: u64| {
        items
            .iter()
            .find(|e| e["operation"] == op && e["status"] == status)
            .unwrap_or_else(|| panic!("no {op} {status} in {v}"))
    };
    let created = find("instance_create", 202);
    assert_eq!(created["actor"], "user 'alice' (token 'session')", "{created}");
    assert_eq!((created["method"].as_str(), created["result"].as_str()), (Some("POST"), Some("ok")));
    assert_eq!(created["source_address"], "127.0.0.1");
    assert!(created["user_id"].is_string() && created["token_id"].is_string() && created["project_id"].is_string());
    let refused = find("instance_create", 404);
    assert_eq!(refused["result"], "NotFound");
    let anonymous = find("project_delete", 401);
    assert_eq!(
        (anonymous["actor"].as_str(), anonymous["result"].as_str()),
        (Some("anonymous"), Some("Unauthenticated"))
    );
    let failed_login = find("session_create", 401);
    assert_eq!(failed_login["actor"], "login as 'alice'");
    assert!(!v.to_string().contains("a wrong password"), "passwords must never be logged");
    assert!(items.iter().all(|e| e["method"] != "GET"), "{v}");
    let times: Vec<&str> = items.iter().filter_map(|e| e["time"].as_str()).collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "oldest first: {times:?}");

    // Filters.
    let (s, v) = k.get("/v1/system/audit-log?user=alice&operation=instance_create");
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["items"].as_array().map(Vec::len), Some(2), "{v}");
    let (_, v) = k.get("/v1/system/audit-log?project=b");
    assert!(v["items"].as_array().is_some_and(|i| i.iter().all(|e| e["project_id"] == refused["project_id"])), "{v}");
    let (_, v) = k.get("/v1/system/audit-log?since=2999-01-01T00:00:00Z");
    assert_eq!(v["items"], json!([]));
    assert_eq!(k.get("/v1/system/audit-log?since=yesterday").0, 400);
    let (s, v) = k.get("/v1/system/audit-log?limit=2");
    assert!(s == 200 && v["next_page"].is_string(), "{v}");
    // Owners read their project's entries; nothing else.
    let (s, v) = alice.get("/v1/system/audit-log?project=a");
    assert!(s == 200 && !v["items"].as_array().expect("items").is_empty(), "{v}");
    assert_eq!(alice.get("/v1/system/audit-log").0, 403);
    assert_eq!(alice.get("/v1/system/audit-log?project=b").0, 404);
}

/// Runs the `kumo` CLI with its own config file; returns (success, stdout, stderr).
fn kumo(
    k: &Kumod,
    config: &std::path::Path,
    token: Option<&str>,
    args: &[&str],
    stdin: &str,
) -> (bool, String, String) {
    use std::io::Write;
    let mut cmd = std::process::Command::new(common::kumo_binary());
    cmd.args(args)
        .env("KUMO_CONFIG", config)
        .env("KUMO_URL", &k.url)
        .env_remove("KUMO_TOKEN")
        .env_remove("KUMO_PROJECT")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    if let Some(t) = token {
        cmd.env("KUMO_TOKEN", t);
    }
    let mut child = cmd.spawn().unwrap_or_else(|e| {
        panic!("run {}: {e} (build the workspace first: cargo build --workspace)", common::kumo_binary().display())
    });
    child.stdin.take().expect("stdin").write_all(stdin.as_bytes()).expect("write stdin");
    let out = child.wait_with_output().expect("kumo");
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

#[test]
fn the_cli_manages_users_logs_in_with_a_password_and_makes_tokens() {
    let k = cloud();
    let dir = tempfile::tempdir().expect("temp dir");
    let op_config = dir.path().join("operator.json");
    let alice_config = dir.path().join("alice.json");
    let op = |args: &[&str], stdin: &str| kumo(&k, &op_config, Some(&k.token), args, stdin);
    let (ok, out, err) = op(&["user", "create", "alice", "--password-stdin"], &format!("{PASSWORD}\n"));
    assert!(ok && out.contains("alice"), "{out}{err}");
    assert!(op(&["project", "create", "shop"], "").0);
    let (ok, out, err) = op(&["project", "member", "add", "shop", "alice", "--role", "owner"], "");
    assert!(ok && out.contains("owner"), "{out}{err}");

    let (ok, out, err) =
        kumo(&k, &alice_config, None, &["login", "--user", "alice", "--password-stdin"], "wrong password\n");
    assert!(!ok && err.contains("wrong user name or password"), "{out}{err}");
    let (ok, out, err) =
        kumo(&k, &alice_config, None, &["login", "--user", "alice", "--password-stdin"], &format!("{PASSWORD}\n"));
    assert!(ok && out.contains("alice"), "{out}{err}");
    let alice = |args: &[&str]| kumo(&k, &alice_config, None, args, "");
    let (ok, out, err) = alice(&["project", "list"]);
    assert!(ok && out.contains("shop"), "the saved session works: {out}{err}");
    let (ok, out, err) = alice(&["token", "create", "ci", "--expires", "30d"]);
    assert!(ok, "{out}{err}");
    let secret = out.lines().next().unwrap_or("").trim().to_string();
    assert!(secret.starts_with("kumo_"), "the secret comes first: {out}");
    let (ok, out, _) = alice(&["token", "list"]);
    assert!(ok && out.contains("ci") && !out.contains(&secret), "{out}");
    let (ok, out, err) = kumo(&k, &op_config, Some(&secret), &["project", "member", "list", "shop"], "");
    assert!(ok && out.contains("alice") && out.contains("owner"), "the new token works: {out}{err}");
    assert!(alice(&["token", "delete", "ci"]).0);
    assert!(!kumo(&k, &op_config, Some(&secret), &["project", "list"], "").0, "revoked");

    let (ok, out, err) = op(&["audit-log", "--since", "1h", "--user", "alice"], "");
    assert!(ok && out.contains("token_create") && out.contains("token_delete"), "{out}{err}");
    let (ok, out, _) = op(&["user", "list"], "");
    assert!(ok && out.contains("alice"), "{out}");
    assert!(!alice(&["user", "list"]).0, "tenants may not list users");
}

/// A live event stream, read line by line on a thread (None on the channel: the stream ended).
struct LiveStream {
    lines: std::sync::mpsc::Receiver<Option<String>>,
}

/// How long an open stream may outlive its authority.
const STREAM_END_DEADLINE: Duration = Duration::from_secs(5);

impl LiveStream {
    fn open(k: &Kumod, path: &str, auth: impl FnOnce(RequestBuilder) -> RequestBuilder) -> LiveStream {
        use std::io::BufRead;
        let client = reqwest::blocking::Client::builder().timeout(None).build().expect("http client");
        let resp = auth(client.get(format!("{}{path}", k.url))).send().expect("open the stream");
        let ct = resp.headers().get("content-type").and_then(|h| h.to_str().ok()).unwrap_or("").to_string();
        assert!(resp.status() == 200 && ct.starts_with("text/event-stream"), "{path}: {} {ct}", resp.status());
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(resp).lines() {
                let Ok(line) = line else { break };
                if tx.send(Some(line)).is_err() {
                    return;
                }
            }
            let _ = tx.send(None);
        });
        LiveStream { lines }
    }

    /// Reads until a line contains `needle`; panics if the stream ends or the deadline passes.
    fn wait_for(&self, needle: &str) {
        let deadline = std::time::Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(Some(line)) if line.contains(needle) => return,
                Ok(Some(_)) => {}
                Ok(None) => panic!("the stream ended before {needle} came"),
                Err(_) => panic!("{needle} did not come within {WAIT:?}"),
            }
        }
    }

    /// Reads until the stream ends; returns the lines read meanwhile and how long after `since`
    /// it ended. Panics if it is still open `STREAM_END_DEADLINE` after `since`.
    fn until_end(&self, since: std::time::Instant) -> (Vec<String>, Duration) {
        let start = since;
        let deadline = start + STREAM_END_DEADLINE;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(Some(line)) => seen.push(line),
                Ok(None) => return (seen, start.elapsed()),
                Err(_) => panic!("the stream is still open {STREAM_END_DEADLINE:?} later; read: {seen:?}"),
            }
        }
    }
}

/// Makes an event in project a (a volume `name` is created).
fn make_event(owner: &As, name: &str) {
    let (s, v) = owner.post("/v1/volumes?project=a", json!({"name": name, "size_gib": 1}));
    assert_eq!(s, 202, "{v}");
}

/// An ended stream said why, and delivered nothing made after the withdrawal.
fn assert_ended_cleanly(what: &str, lines: &[String], elapsed: Duration, after: &str) {
    eprintln!("{what}: the stream ended {elapsed:?} after the withdrawal");
    assert!(lines.iter().any(|l| l == "event: revoked"), "{what}: no `event: revoked` before the end: {lines:?}");
    assert!(
        !lines.iter().any(|l| l.contains(&format!("\"{after}\""))),
        "{what}: an event made after the withdrawal was delivered: {lines:?}"
    );
}

#[test]
fn open_event_streams_end_when_their_authority_is_withdrawn() {
    let k = cloud();
    let [alice, bob, _carol] = tenants(&k);
    let alice = As { k: &k, token: Some(alice) };
    let stream = "/v1/events/stream?project=a";

    // 1. The membership is removed.
    let s = LiveStream::open(&k, stream, |r| r.bearer_auth(&bob));
    make_event(&alice, "ev-1");
    s.wait_for("\"ev-1\"");
    let withdrawn = std::time::Instant::now();
    assert_eq!(alice.delete("/v1/projects/a/members/bob").0, 204);
    make_event(&alice, "ev-2");
    let (lines, took) = s.until_end(withdrawn);
    assert_ended_cleanly("membership removed", &lines, took, "ev-2");
    let (st, v) = As { k: &k, token: Some(bob.clone()) }.get(stream);
    assert_eq!(st, 404, "and it cannot be reopened: {v}");

    // 2. The token is revoked.
    add_member(&k, "a", "bob", "viewer");
    let as_bob = As { k: &k, token: Some(bob.clone()) };
    let (st, v) = as_bob.post("/v1/me/tokens", json!({"name": "watch"}));
    assert_eq!(st, 201, "{v}");
    let watch = v["token"].as_str().expect("token").to_string();
    let s = LiveStream::open(&k, stream, |r| r.bearer_auth(&watch));
    make_event(&alice, "ev-3");
    s.wait_for("\"ev-3\"");
    let withdrawn = std::time::Instant::now();
    assert_eq!(as_bob.delete("/v1/me/tokens/watch").0, 204);
    make_event(&alice, "ev-4");
    let (lines, took) = s.until_end(withdrawn);
    assert_ended_cleanly("token revoked", &lines, took, "ev-4");

    // 3. The dashboard's stream, and its session logs out.
    let session = session(&k, "bob");
    let cookie = format!("kumo_session=s.{session}");
    let s = LiveStream::open(&k, "/projects/a/events", |r| r.header("cookie", &cookie));
    make_event(&alice, "ev-5");
    s.wait_for("\"ev-5\"");
    let csrf = kumo_web::session::csrf_for(&session);
    let withdrawn = std::time::Instant::now();
    let resp = k
        .http
        .post(format!("{}/logout", k.url))
        .header("cookie", &cookie)
        .form(&[("_csrf", csrf.as_str())])
        .send()
        .expect("logout");
    assert!(resp.status().is_redirection() || resp.status().is_success(), "logout: {}", resp.status());
    assert_eq!(As { k: &k, token: Some(session) }.get("/v1/me").0, 401, "the session is over");
    make_event(&alice, "ev-6");
    let (lines, took) = s.until_end(withdrawn);
    assert_ended_cleanly("logged out", &lines, took, "ev-6");

    // 4. `kumo event watch` says why its stream ended, and fails.
    let (st, v) = as_bob.post("/v1/me/tokens", json!({"name": "cli"}));
    assert_eq!(st, 201, "{v}");
    let cli_token = v["token"].as_str().expect("token").to_string();
    let config = tempfile::tempdir().expect("temp dir");
    let mut watch = std::process::Command::new(common::kumo_binary())
        .args(["event", "watch", "--project", "a"])
        .env("KUMO_CONFIG", config.path().join("config.json"))
        .env("KUMO_URL", &k.url)
        .env("KUMO_TOKEN", &cli_token)
        .env_remove("KUMO_PROJECT")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("kumo event watch");
    let stdout = watch.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    // The watch is live once it shows an event made after it started.
    let deadline = std::time::Instant::now() + WAIT;
    let mut n = 8;
    'live: loop {
        make_event(&alice, &format!("ev-{n}"));
        while let Ok(line) = rx.recv_timeout(Duration::from_millis(500)) {
            if line.contains("ev-") {
                break 'live;
            }
        }
        n += 1;
        assert!(std::time::Instant::now() < deadline, "kumo event watch showed no event");
    }
    assert_eq!(as_bob.delete("/v1/me/tokens/cli").0, 204);
    let deadline = std::time::Instant::now() + STREAM_END_DEADLINE;
    let status = loop {
        if let Some(status) = watch.try_wait().expect("wait") {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = watch.kill();
            panic!("kumo event watch still runs {STREAM_END_DEADLINE:?} after its token was revoked");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut watch.stderr.take().expect("stderr"), &mut err).expect("stderr");
    assert!(!status.success() && err.contains("event stream ended"), "{status}: {err}");

    // A member's stream whose authority holds stays open and keeps delivering.
    let s = LiveStream::open(&k, stream, |r| r.bearer_auth(alice.token.as_deref().unwrap_or_default()));
    make_event(&alice, "ev-7");
    s.wait_for("\"ev-7\"");
}

/// Waits until `path` (read as `who`) shows `field` == `want`.
fn wait_field(who: &As, path: &str, field: &str, want: &str) -> Value {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let (s, v) = who.get(path);
        if s == 200 && v[field] == want {
            return v;
        }
        assert!(std::time::Instant::now() < deadline, "{path}: {field} did not become {want}: {s} {v}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Project b's things, made by its collaborator carol: (name → id).
fn things_of_b(k: &Cloud, carol: &As) -> std::collections::BTreeMap<&'static str, String> {
    let mut ids = std::collections::BTreeMap::new();
    let mut made = |what: &'static str, (s, v): (u16, Value)| {
        assert!((200..300).contains(&s), "carol makes {what} in b: {s} {v}");
        ids.insert(what, v["id"].as_str().unwrap_or_else(|| panic!("{what}: no id in {v}")).to_string());
    };
    made(
        "vm-b",
        carol.post("/v1/instances?project=b", json!({"name": "vm-b", "image": IMAGE, "instance_type": "k1-nano"})),
    );
    made("vol-b", carol.post("/v1/volumes?project=b", json!({"name": "vol-b", "size_gib": 1})));
    wait_field(carol, "/v1/volumes/vol-b?project=b", "state", "available");
    made("snap-b", carol.post("/v1/snapshots?project=b", json!({"name": "snap-b", "volume": "vol-b"})));
    made("bk-b", carol.post("/v1/volume-backups?project=b", json!({"name": "bk-b", "volume": "vol-b"})));
    let (s, _, v) = send(
        carol
            .req(Method::POST, "/v1/images/import?project=b&name=img-b")
            .header("content-type", "application/octet-stream")
            .body(k.fixture_bytes()),
    );
    made("img-b", (s, v));
    made("vpc-b", carol.post("/v1/vpcs?project=b", json!({"name": "vpc-b", "ipv4_cidr": "10.30.0.0/16"})));
    made(
        "sn-b",
        carol.post("/v1/vpc-subnets?project=b&vpc=vpc-b", json!({"name": "sn-b", "ipv4_cidr": "10.30.1.0/24"})),
    );
    made("sg-b", carol.post("/v1/security-groups?project=b", json!({"name": "sg-b"})));
    let key = SSH_KEY_X.replace("key-x", "key-b");
    made("key-b", carol.post("/v1/ssh-keys?project=b", serde_json::from_str(&key).expect("json")));
    made("fip-b", carol.post("/v1/floating-ips?project=b", json!({"name": "fip-b"})));
    wait_field(carol, "/v1/instances/vm-b?project=b", "state", "running");
    ids
}

/// A request naming project b's things from project a, by name and by id, must get exactly the
/// answer the same request gets for a thing that exists nowhere: the same status (never 2xx,
/// never 403), error code and message (up to the reference itself). So nothing is done, and
/// nothing about b leaks.
#[test]
fn another_projects_things_named_in_bodies_and_queries_are_not_found() {
    let k = cloud();
    let [alice, _bob, carol] = tenants(&k);
    let alice = As { k: &k, token: Some(alice) };
    let carol = As { k: &k, token: Some(carol) };
    let mut b = things_of_b(&k, &carol);
    let (_, v) = k.get("/v1/projects/b");
    b.insert("b", v["id"].as_str().expect("project id").to_string());
    let missing_id = uuid::Uuid::new_v4().to_string();

    // (what, method, path, body; `{R}` is the reference: b's thing, or one that exists nowhere).
    let cases: &[(&str, Method, &str, &str)] = &[
        // Another project as the selector.
        ("project b's instances", Method::GET, "/v1/instances?project={R}", ""),
        ("project b's events", Method::GET, "/v1/events/stream?project={R}", ""),
        ("a volume in project b", Method::POST, "/v1/volumes?project={R}", r#"{"name":"x1","size_gib":1}"#),
        ("vm-b in project b", Method::GET, "/v1/instances/vm-b?project={R}", ""),
        ("stop vm-b in project b", Method::POST, "/v1/instances/vm-b/stop?project={R}", ""),
        // Another project's thing in the path, with the caller's own project as the selector.
        ("attach b's volume", Method::POST, "/v1/volumes/{R}/attach?project=a", r#"{"instance":"vm-a"}"#),
        ("resize b's volume", Method::POST, "/v1/volumes/{R}/resize?project=a", r#"{"size_gib":2}"#),
        ("delete b's snapshot", Method::DELETE, "/v1/snapshots/{R}?project=a", ""),
        ("delete b's backup", Method::DELETE, "/v1/volume-backups/{R}?project=a", ""),
        ("export b's image", Method::GET, "/v1/images/{R}/export?project=a", ""),
        ("stop b's instance", Method::POST, "/v1/instances/{R}/stop?project=a", ""),
        ("b's instance metrics", Method::GET, "/v1/instances/{R}/metrics?project=a&metric=cpu", ""),
        ("attach b's floating ip", Method::POST, "/v1/floating-ips/{R}/attach?project=a", r#"{"instance":"vm-a"}"#),
        ("rules of b's group", Method::PUT, "/v1/security-groups/{R}/rules?project=a", r#"{"rules":[]}"#),
        ("b's subnet", Method::GET, "/v1/vpc-subnets/{R}?project=a&vpc=default", ""),
        // In query strings.
        ("subnets of b's vpc", Method::GET, "/v1/vpc-subnets?project=a&vpc={R}", ""),
        (
            "a subnet in b's vpc",
            Method::POST,
            "/v1/vpc-subnets?project=a&vpc={R}",
            r#"{"name":"x0","ipv4_cidr":"10.30.9.0/24"}"#,
        ),
        // In bodies.
        (
            "attach a's volume to b's instance",
            Method::POST,
            "/v1/volumes/vol-a/attach?project=a",
            r#"{"instance":"{R}"}"#,
        ),
        (
            "attach a's floating ip to b's instance",
            Method::POST,
            "/v1/floating-ips/fip-a/attach?project=a",
            r#"{"instance":"{R}"}"#,
        ),
        (
            "volume from b's snapshot",
            Method::POST,
            "/v1/volumes?project=a",
            r#"{"name":"x1","size_gib":1,"source_snapshot":"{R}"}"#,
        ),
        (
            "volume from b's backup",
            Method::POST,
            "/v1/volumes?project=a",
            r#"{"name":"x1","size_gib":1,"source_backup":"{R}"}"#,
        ),
        (
            "volume from b's image",
            Method::POST,
            "/v1/volumes?project=a",
            r#"{"name":"x1","size_gib":1,"source_image":"{R}"}"#,
        ),
        ("snapshot of b's volume", Method::POST, "/v1/snapshots?project=a", r#"{"name":"x2","volume":"{R}"}"#),
        ("backup of b's volume", Method::POST, "/v1/volume-backups?project=a", r#"{"name":"x3","volume":"{R}"}"#),
        ("image from b's snapshot", Method::POST, "/v1/images?project=a", r#"{"name":"x4","source_snapshot":"{R}"}"#),
        ("image from b's instance", Method::POST, "/v1/images?project=a", r#"{"name":"x4","source_instance":"{R}"}"#),
        (
            "instance from b's image",
            Method::POST,
            "/v1/instances?project=a",
            r#"{"name":"x5","image":"{R}","instance_type":"k1-nano"}"#,
        ),
        (
            "instance in b's vpc",
            Method::POST,
            "/v1/instances?project=a",
            r#"{"name":"x5","image":"fixture","instance_type":"k1-nano","vpc":"{R}"}"#,
        ),
        (
            "instance in b's subnet",
            Method::POST,
            "/v1/instances?project=a",
            r#"{"name":"x5","image":"fixture","instance_type":"k1-nano","subnet":"{R}"}"#,
        ),
        (
            "instance with b's group",
            Method::POST,
            "/v1/instances?project=a",
            r#"{"name":"x5","image":"fixture","instance_type":"k1-nano","security_groups":["{R}"]}"#,
        ),
        (
            "instance with b's key",
            Method::POST,
            "/v1/instances?project=a",
            r#"{"name":"x5","image":"fixture","instance_type":"k1-nano","ssh_keys":["{R}"]}"#,
        ),
        (
            "rule with b's group as source",
            Method::PUT,
            "/v1/security-groups/default/rules?project=a",
            r#"{"rules":[{"direction":"ingress","protocol":"tcp","port_range":"22","source":"{R}"}]}"#,
        ),
    ];
    // Which of b's things each case names.
    let thing = |what: &str| -> &'static str {
        match () {
            _ if what.contains("project b") => "b",
            _ if what.contains("b's volume") => "vol-b",
            _ if what.contains("b's snapshot") => "snap-b",
            _ if what.contains("b's backup") => "bk-b",
            _ if what.contains("b's image") => "img-b",
            _ if what.contains("b's instance") => "vm-b",
            _ if what.contains("b's floating ip") => "fip-b",
            _ if what.contains("b's group") => "sg-b",
            _ if what.contains("b's vpc") => "vpc-b",
            _ if what.contains("b's subnet") => "sn-b",
            _ if what.contains("b's key") => "key-b",
            _ => panic!("which thing of b does '{what}' name?"),
        }
    };
    let call = |method: &Method, path: &str, body: &str| {
        let req = alice.req(method.clone(), path);
        let req =
            if body.is_empty() { req } else { req.header("content-type", "application/json").body(body.to_string()) };
        let (s, _, v) = send(req);
        (s, v)
    };
    let mut failures = Vec::new();
    for (what, method, path, body) in cases {
        let name = thing(what);
        let id = b[name].as_str();
        // Names are tried where the API takes names; ids everywhere (rule sources take names only).
        let refs: Vec<(&str, &str)> = if what.contains("rule with") {
            vec![(name, "zz-none")]
        } else {
            vec![(name, "zz-none"), (id, missing_id.as_str())]
        };
        for (cross, missing) in refs {
            let (s, v) = call(method, &path.replace("{R}", cross), &body.replace("{R}", cross));
            let (ms, mv) = call(method, &path.replace("{R}", missing), &body.replace("{R}", missing));
            let norm = |v: &Value, r: &str| v["message"].as_str().unwrap_or("").replace(r, "<ref>");
            let same = s == ms && v["error_code"] == mv["error_code"] && norm(&v, cross) == norm(&mv, missing);
            if (200..300).contains(&s) || s == 403 || !same || !matches!(s, 400 | 404) {
                failures.push(format!(
                    "{what} ({method} {path} with {cross}): got {s} {v}; for a thing that exists nowhere: {ms} {mv}"
                ));
            }
        }
    }
    // Ids of another project's instance need no project selector; still 404 for a non-member.
    for (method, path) in [
        (Method::GET, format!("/v1/instances/{}", b["vm-b"])),
        (Method::POST, format!("/v1/instances/{}/stop", b["vm-b"])),
        (Method::DELETE, format!("/v1/instances/{}", b["vm-b"])),
    ] {
        let (s, v) = call(&method, &path, "");
        if s != 404 {
            failures.push(format!("{method} {path}: got {s} {v}, want 404"));
        }
    }
    // Events of b's instance read through a's selector: none.
    let (s, v) = alice.get(&format!("/v1/events?project=a&instance={}", b["vm-b"]));
    if s != 200 || v["items"] != json!([]) {
        failures.push(format!("events of b's instance through project a: {s} {v}"));
    }
    // Joining b, or removing its members: 404 like any project she is not in.
    for (method, path, body) in [
        (Method::POST, "/v1/projects/b/members", r#"{"user":"alice","role":"owner"}"#),
        (Method::DELETE, "/v1/projects/b/members/carol", ""),
    ] {
        let (s, v) = call(&method, path, body);
        if s != 404 {
            failures.push(format!("{method} {path}: got {s} {v}, want 404"));
        }
    }
    assert!(failures.is_empty(), "{} cross-project leaks:\n{}", failures.len(), failures.join("\n"));

    // Nothing changed, as b's collaborator sees it...
    let v = wait_field(&carol, "/v1/instances/vm-b?project=b", "state", "running");
    assert_eq!(v["instance_type"], "k1-nano", "{v}");
    let (s, v) = carol.get("/v1/volumes/vol-b?project=b");
    assert_eq!((s, v["state"].as_str(), v["size_gib"].as_i64()), (200, Some("available"), Some(1)), "{v}");
    assert!(v["attached_to"].is_null(), "{v}");
    let (s, v) = carol.get("/v1/floating-ips/fip-b?project=b");
    assert!(s == 200 && v["instance"].is_null(), "{v}");
    for (path, n) in [
        ("/v1/snapshots?project=b", 1),
        ("/v1/volume-backups?project=b", 1),
        ("/v1/volumes?project=b", 1),
        ("/v1/instances?project=b", 1),
        ("/v1/vpc-subnets?project=b&vpc=vpc-b", 1),
    ] {
        let (s, v) = carol.get(path);
        assert_eq!((s, v["items"].as_array().map(Vec::len)), (200, Some(n)), "{path}: {v}");
    }
    let (s, v) = carol.get("/v1/images/img-b?project=b");
    assert_eq!(s, 200, "{v}");
    let (s, v) = carol.get("/v1/security-groups/sg-b/rules?project=b");
    assert_eq!(s, 200, "{v}");
    let (s, v) = carol.get("/v1/projects/b/members");
    let members: Vec<&str> = v.as_array().into_iter().flatten().filter_map(|m| m["user"].as_str()).collect();
    assert_eq!((s, members), (200, vec!["carol"]), "{v}");
    // ...and in a, as its owner sees it.
    let (s, v) = alice.get("/v1/volumes/vol-a?project=a");
    assert!(s == 200 && v["attached_to"].is_null(), "{v}");
    let (s, v) = alice.get("/v1/floating-ips/fip-a?project=a");
    assert!(s == 200 && v["instance"].is_null(), "{v}");
    for path in [
        "/v1/volumes/x1?project=a",
        "/v1/snapshots/x2?project=a",
        "/v1/volume-backups/x3?project=a",
        "/v1/images/x4?project=a",
        "/v1/instances/x5?project=a",
        "/v1/vpc-subnets/x0?project=a&vpc=default",
    ] {
        assert_eq!(alice.get(path).0, 404, "{path} must not exist");
    }
}

#[test]
fn a_collaborator_runs_instances_and_volumes_but_does_not_manage_members() {
    let k = cloud();
    let [_alice, _bob, carol] = tenants(&k);
    let carol = As { k: &k, token: Some(carol) };
    let (s, v) =
        carol.post("/v1/instances?project=b", json!({"name": "web", "image": IMAGE, "instance_type": "k1-nano"}));
    assert_eq!(s, 202, "{v}");
    wait_field(&carol, "/v1/instances/web?project=b", "state", "running");
    assert_eq!(carol.post("/v1/instances/web/stop?project=b", json!({})).0, 202);
    wait_field(&carol, "/v1/instances/web?project=b", "state", "stopped");
    assert_eq!(carol.post("/v1/instances/web/start?project=b", json!({})).0, 202);
    wait_field(&carol, "/v1/instances/web?project=b", "state", "running");

    let (s, v) = carol.post("/v1/volumes?project=b", json!({"name": "data", "size_gib": 1}));
    assert_eq!(s, 202, "{v}");
    wait_field(&carol, "/v1/volumes/data?project=b", "state", "available");
    let (s, v) = carol.post("/v1/volumes/data/attach?project=b", json!({"instance": "web"}));
    assert!((200..300).contains(&s), "attach: {s} {v}");
    wait_field(&carol, "/v1/volumes/data?project=b", "state", "attached");
    let (s, v) = carol.post("/v1/volumes/data/detach?project=b", json!({}));
    assert!((200..300).contains(&s), "detach: {s} {v}");
    wait_field(&carol, "/v1/volumes/data?project=b", "state", "available");
    let (s, v) = carol.delete("/v1/volumes/data?project=b");
    assert!((200..300).contains(&s), "volume delete: {s} {v}");
    let (s, v) = carol.delete("/v1/instances/web?project=b");
    assert!((200..300).contains(&s), "instance delete: {s} {v}");
    k.wait_state("b", "web", "gone", WAIT);

    // Members and the budget are the owner's.
    let (s, v) = carol.post("/v1/projects/b/members", json!({"user": "bob", "role": "viewer"}));
    assert_eq!((s, v["error_code"].as_str()), (403, Some("Forbidden")), "{v}");
    assert_eq!(carol.delete("/v1/projects/b/members/carol").0, 403);
    assert_eq!(carol.put("/v1/projects/b/budget", json!({"monthly": "1.00", "alert_at_percent": 80})).0, 403);
    let (s, v) = carol.get("/v1/projects/b/members");
    let members: Vec<&str> = v.as_array().into_iter().flatten().filter_map(|m| m["user"].as_str()).collect();
    assert_eq!((s, members), (200, vec!["carol"]), "nothing changed: {v}");
}
