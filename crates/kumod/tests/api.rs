//! API integration tests: a real `kumod` with the simulated hypervisor per test, driven over HTTP.
//!
//! The sim driver needs an image to create instances from; every test's kumod gets an image cache
//! holding one tiny fixture image (an empty qcow2 made with `qemu-img`, from qemu-utils, which
//! scripts/install-deps.sh installs), registered as the public image `fixture`.

mod common;

use common::{cloud, Cloud, Kumod, FIXTURE_IMAGE};
use reqwest::blocking::RequestBuilder;
use reqwest::header::HeaderMap;
use reqwest::Method;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::time::Duration;

/// Deadline of every wait for a state on the sim driver (which converges in milliseconds).
const WAIT: Duration = Duration::from_secs(20);
const IMAGE: &str = common::FIXTURE_IMAGE;

/// A kumod whose host is big enough for anything the tests create (but has no GPU).
fn roomy() -> Cloud {
    cloud(&["--host-vcpus", "16", "--host-memory-mib", "16384", "--host-disk-gib", "500"])
}

/// Asserts an error response: status, error code, the one error body. Returns the message.
#[track_caller]
fn assert_error(resp: (u16, Value), status: u16, code: &str) -> String {
    let (s, v) = resp;
    assert_eq!(s, status, "unexpected status; body: {v}");
    assert_eq!(v["error_code"], code, "{v}");
    assert!(v["request_id"].as_str().is_some_and(|r| !r.is_empty()), "no request_id: {v}");
    let msg = v["message"].as_str().unwrap_or_default().to_string();
    assert!(!msg.is_empty(), "no message: {v}");
    msg
}

/// A request without credentials.
fn raw(k: &Kumod, method: Method, path: &str) -> RequestBuilder {
    k.http.request(method, format!("{}{path}", k.url))
}

/// Sends a request as it is; returns status, headers and the body (JSON, or a string).
fn send(req: RequestBuilder) -> (u16, HeaderMap, Value) {
    let resp = req.send().expect("request");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let text = resp.text().unwrap_or_default();
    let v = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, headers, v)
}

fn create_instance(k: &Kumod, project: &str, name: &str, itype: &str) -> (u16, Value) {
    k.post(&format!("/v1/instances?project={project}"), json!({"name": name, "image": IMAGE, "instance_type": itype}))
}

/// Creates an instance and waits until it runs.
fn running_instance(k: &Kumod, project: &str, name: &str, itype: &str) -> Value {
    let (s, v) = create_instance(k, project, name, itype);
    assert_eq!(s, 202, "{v}");
    k.wait_state(project, name, "running", WAIT)
}

/// Asks for an action and checks the 202 with the transitional state.
#[track_caller]
fn act(k: &Kumod, project: &str, name: &str, action: &str, transitional: &str) {
    let (s, v) = k.post_empty(&format!("/v1/instances/{name}/{action}?project={project}"));
    assert_eq!(s, 202, "{action}: {v}");
    assert_eq!(v["state"], transitional, "{action}: {v}");
}

fn delete_instance(k: &Kumod, project: &str, name: &str) {
    let (s, v) = k.delete(&format!("/v1/instances/{name}?project={project}"));
    assert_eq!(s, 202, "{v}");
    assert_eq!(v["state"], "deleting", "{v}");
    k.wait_state(project, name, "gone", WAIT);
}

/// The one host of the cloud.
fn host(k: &Kumod) -> Value {
    let (s, v) = k.get("/v1/hosts");
    assert_eq!(s, 200, "{v}");
    let items = v["items"].as_array().expect("items");
    assert_eq!(items.len(), 1, "{v}");
    items[0].clone()
}

/// (vcpus, memory_mib, disk_gib, gpus) reserved on the host.
fn used(k: &Kumod) -> (i64, i64, i64, i64) {
    let h = host(k);
    let n = |f: &str| h[f].as_i64().unwrap_or_else(|| panic!("{f} missing: {h}"));
    (n("vcpus_used"), n("memory_mib_used"), n("disk_gib_used"), n("gpus_used"))
}

fn names(page: &Value) -> Vec<String> {
    page["items"].as_array().expect("items").iter().map(|i| i["name"].as_str().expect("name").to_string()).collect()
}

fn instance_names(k: &Kumod, project: &str) -> Vec<String> {
    let (s, v) = k.get(&format!("/v1/instances?project={project}"));
    assert_eq!(s, 200, "{v}");
    names(&v)
}

/// An RFC 3339 UTC timestamp as a string that sorts by time (the fraction, of 0 to 9 digits on the
/// wire, padded to 9).
fn time_key(v: &Value) -> String {
    let s = v.as_str().unwrap_or_else(|| panic!("not a timestamp: {v}"));
    let body = s.strip_suffix('Z').unwrap_or_else(|| panic!("not UTC: {s}"));
    let (secs, frac) = body.split_once('.').unwrap_or((body, ""));
    assert!(secs.len() == 19 && secs.as_bytes()[10] == b'T', "not RFC 3339: {s}");
    assert!(frac.len() <= 9 && frac.bytes().all(|b| b.is_ascii_digit()), "bad fraction: {s}");
    format!("{secs}.{frac:0<9}")
}

/// Every event of a project (optionally filtered by `instance`), following pages.
fn events(k: &Kumod, project: &str, instance: Option<&str>) -> Vec<Value> {
    let mut out = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut path = format!("/v1/events?project={project}&limit=3");
        if let Some(i) = instance {
            path.push_str(&format!("&instance={i}"));
        }
        if let Some(t) = &token {
            path.push_str(&format!("&page_token={t}"));
        }
        let (s, v) = k.get(&path);
        assert_eq!(s, 200, "{v}");
        out.extend(v["items"].as_array().expect("items").iter().cloned());
        match v["next_page"].as_str() {
            Some(t) => token = Some(t.to_string()),
            None => return out,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Authentication

#[test]
fn missing_malformed_or_wrong_credentials_are_401_with_the_error_body() {
    let k = cloud(&[]);
    let cases: Vec<(&str, Option<String>)> = vec![
        ("no header", None),
        ("basic auth", Some("Basic dXNlcjpwYXNz".into())),
        ("scheme only", Some("Bearer".into())),
        ("empty token", Some("Bearer    ".into())),
        ("other scheme", Some(format!("Token {}", k.token))),
        ("token without scheme", Some(k.token.clone())),
        ("wrong token", Some(format!("Bearer kumo_{}", "0".repeat(64)))),
        ("token with junk", Some(format!("Bearer {}x", k.token))),
    ];
    for (what, header) in cases {
        for path in ["/v1/projects", "/v1/me", "/v1/hosts"] {
            let mut req = raw(&k, Method::GET, path);
            if let Some(h) = &header {
                req = req.header("authorization", h);
            }
            let (s, headers, v) = send(req);
            assert_eq!(s, 401, "{what} on {path}: {v}");
            assert_eq!(v["error_code"], "Unauthenticated", "{what}: {v}");
            assert!(!v["message"].as_str().unwrap_or_default().is_empty(), "{what}: {v}");
            let rid = v["request_id"].as_str().unwrap_or_default();
            assert!(!rid.is_empty(), "{what}: {v}");
            assert_eq!(headers.get("x-request-id").and_then(|h| h.to_str().ok()), Some(rid), "{what}");
        }
    }
    // The message tells where the token is.
    let (_, _, v) = send(raw(&k, Method::GET, "/v1/projects"));
    assert!(v["message"].as_str().unwrap_or_default().contains("admin-token"), "{v}");
    // A rejected request changed nothing.
    let (s, v) = k.get("/v1/projects");
    assert_eq!((s, names(&v)), (200, vec![]), "{v}");
}

#[test]
fn admin_token_works_and_its_file_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let k = cloud(&[]);
    let path = k.data_dir().join("admin-token");
    let mode = std::fs::metadata(&path).expect("admin-token").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "admin-token has mode {mode:o}");
    assert!(k.token.starts_with("kumo_") && k.token.len() > 40, "token looks weak: {}", k.token.len());
    let (s, headers, v) = send(raw(&k, Method::GET, "/v1/me").bearer_auth(&k.token));
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["kind"], "operator", "{v}");
    assert_eq!(v["token_name"], "admin", "{v}");
    assert!(headers.contains_key("x-request-id"), "{headers:?}");
    let (s, v) = k.get("/v1/system/reconcilers");
    assert_eq!(s, 200, "{v}");
}

#[test]
fn openapi_document_is_served_without_credentials() {
    let k = cloud(&[]);
    let (s, _, doc) = send(raw(&k, Method::GET, "/v1/openapi.json"));
    assert_eq!(s, 200, "{doc}");
    assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with('3')), "{doc}");
    assert!(doc["paths"]["/v1/instances"]["post"]["operationId"] == "instance_create", "{doc}");
}

// ---------------------------------------------------------------------------------------------
// Projects

#[test]
fn project_create_refuses_duplicates_and_bad_names_with_explanations() {
    let k = cloud(&[]);
    let (s, v) = k.post("/v1/projects", json!({"name": "web", "description": "the web tier"}));
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["name"], "web");
    assert_eq!(v["description"], "the web tier");
    for f in ["id", "time_created", "time_modified"] {
        assert!(v[f].is_string(), "{f} missing: {v}");
    }
    let msg = assert_error(k.post("/v1/projects", json!({"name": "web"})), 409, "ObjectAlreadyExists");
    assert!(msg.contains("'web'"), "{msg}");

    let uuid = uuid::Uuid::new_v4().to_string();
    let long = "a".repeat(64);
    let cases = [
        ("Web_1", vec!["uppercase", "'_'"]),
        ("1abc", vec!["start with a lowercase letter"]),
        (long.as_str(), vec!["64 characters"]),
        (uuid.as_str(), vec!["UUID"]),
        ("web-", vec!["end with '-'"]),
        ("", vec!["empty"]),
    ];
    for (name, explains) in cases {
        let msg = assert_error(k.post("/v1/projects", json!({ "name": name })), 400, "InvalidValue");
        for e in explains {
            assert!(msg.contains(e), "name '{name}': message should mention {e:?}: {msg}");
        }
    }
    let (s, v) = k.get("/v1/projects");
    assert_eq!((s, names(&v)), (200, vec!["web".to_string()]), "{v}");
}

#[test]
fn project_view_by_name_and_by_id() {
    let k = cloud(&[]);
    let (s, created) = k.post("/v1/projects", json!({"name": "shop"}));
    assert_eq!(s, 201, "{created}");
    let id = created["id"].as_str().expect("id");
    for sel in ["shop", id] {
        let (s, v) = k.get(&format!("/v1/projects/{sel}"));
        assert_eq!(s, 200, "{v}");
        assert_eq!(v, created, "view by {sel} differs from the create response");
    }
    assert_error(k.get("/v1/projects/nope"), 404, "NotFound");
    assert_error(k.get(&format!("/v1/projects/{}", uuid::Uuid::new_v4())), 404, "NotFound");
    assert_error(k.get("/v1/projects/Bad_Name"), 400, "InvalidValue");
}

#[test]
fn project_list_paginates() {
    let k = cloud(&[]);
    let all = ["alpha", "bravo", "charlie", "delta", "echo"];
    for n in ["delta", "alpha", "echo", "charlie", "bravo"] {
        k.create_project(n);
    }
    let collect = |sort: &str| {
        let mut seen = Vec::new();
        let mut pages = 0;
        let mut path = format!("/v1/projects?limit=2{sort}");
        loop {
            let (s, v) = k.get(&path);
            assert_eq!(s, 200, "{v}");
            let page = names(&v);
            assert!(page.len() <= 2, "{v}");
            seen.extend(page);
            pages += 1;
            match v["next_page"].as_str() {
                Some(t) => path = format!("/v1/projects?limit=2&page_token={t}"),
                None => return (seen, pages),
            }
        }
    };
    let (asc, pages) = collect("");
    assert_eq!(asc, all);
    assert_eq!(pages, 3);
    let (desc, _) = collect("&sort_by=name_descending");
    assert_eq!(desc, all.iter().rev().copied().collect::<Vec<_>>());
    let (by_id, _) = collect("&sort_by=id_ascending");
    assert_eq!(by_id, ["delta", "alpha", "echo", "charlie", "bravo"], "id order is creation order");

    let (s, v) = k.get("/v1/projects");
    assert_eq!((s, names(&v).len(), &v["next_page"]), (200, 5, &Value::Null), "{v}");
    let (s, v) = k.get("/v1/projects?limit=5");
    assert_eq!((s, &v["next_page"]), (200, &Value::Null), "an exactly full page is the last: {v}");
    let (s, v) = k.get("/v1/projects?limit=1000");
    assert_eq!((s, names(&v).len()), (200, 5), "{v}");

    for bad in ["limit=0", "limit=1001", "limit=-1", "limit=ten", "page_token=garbage", "page_token=eyJ4IjoxfQ"] {
        let msg = assert_error(k.get(&format!("/v1/projects?{bad}")), 400, "InvalidValue");
        if bad.starts_with("limit=") && !bad.contains('-') && !bad.contains("ten") {
            assert!(msg.contains("1000"), "{bad}: {msg}");
        }
    }
    let (_, first) = k.get("/v1/projects?limit=2");
    let token = first["next_page"].as_str().expect("token");
    let msg = assert_error(
        k.get(&format!("/v1/projects?limit=2&page_token={token}&sort_by=name_descending")),
        400,
        "InvalidValue",
    );
    assert!(msg.contains("sort_by"), "{msg}");
    assert_error(k.get("/v1/projects?sort_by=size"), 400, "InvalidValue");
}

#[test]
fn project_delete_is_204_and_refused_while_it_has_an_instance() {
    let k = cloud(&[]);
    k.create_project("empty");
    let (s, v) = k.delete("/v1/projects/empty");
    assert_eq!(s, 204, "{v}");
    assert_error(k.get("/v1/projects/empty"), 404, "NotFound");
    assert_error(k.delete("/v1/projects/empty"), 404, "NotFound");
    // The name is free again.
    k.create_project("empty");

    k.create_project("busy");
    running_instance(&k, "busy", "vm1", "k1-nano");
    let msg = assert_error(k.delete("/v1/projects/busy"), 409, "InvalidState");
    assert!(msg.contains("instance"), "{msg}");
    let (s, _) = k.get("/v1/projects/busy");
    assert_eq!(s, 200);
    delete_instance(&k, "busy", "vm1");
    let (s, v) = k.delete("/v1/projects/busy");
    assert_eq!(s, 204, "{v}");
}

// ---------------------------------------------------------------------------------------------
// Instances

#[test]
fn instance_lifecycle_on_sim() {
    let k = roomy();
    k.create_project("web");
    let host_name = host(&k)["name"].as_str().expect("host name").to_string();

    let (s, v) = k.post(
        "/v1/instances?project=web",
        json!({"name": "vm1", "description": "first", "image": IMAGE, "instance_type": "k1-small"}),
    );
    assert_eq!(s, 202, "{v}");
    assert_eq!(v["state"], "creating", "{v}");
    let id = v["id"].as_str().expect("id").to_string();
    uuid::Uuid::parse_str(&id).expect("id is a UUID");

    let v = k.wait_state("web", "vm1", "running", WAIT);
    for f in [
        "id",
        "name",
        "description",
        "state",
        "image",
        "instance_type",
        "host",
        "time_created",
        "time_modified",
        "vcpus",
        "memory_mib",
        "disk_gib",
    ] {
        assert!(v.get(f).is_some_and(|x| !x.is_null()), "field {f} missing: {v}");
    }
    assert_eq!(
        (&v["name"], &v["description"], &v["image"], &v["instance_type"], &v["host"]),
        (&json!("vm1"), &json!("first"), &json!(IMAGE), &json!("k1-small"), &json!(host_name)),
        "{v}"
    );
    assert_eq!((v["vcpus"].as_i64(), v["memory_mib"].as_i64(), v["disk_gib"].as_i64()), (Some(1), Some(512), Some(5)));
    // Times are RFC 3339 UTC; a change moves time_modified.
    assert!(time_key(&v["time_modified"]) > time_key(&v["time_created"]), "{v}");
    let (s, by_id) = k.get(&format!("/v1/instances/{id}?project=web"));
    assert_eq!((s, &by_id["name"]), (200, &json!("vm1")), "{by_id}");
    assert_eq!(instance_names(&k, "web"), ["vm1"]);
    assert_eq!(used(&k), (1, 512, 5, 0));

    act(&k, "web", "vm1", "stop", "stopping");
    k.wait_state("web", "vm1", "stopped", WAIT);
    act(&k, "web", "vm1", "start", "starting");
    k.wait_state("web", "vm1", "running", WAIT);
    act(&k, "web", "vm1", "reboot", "rebooting");
    k.wait_state("web", "vm1", "running", WAIT);

    // Resize only when stopped.
    let msg = assert_error(
        k.post("/v1/instances/vm1/resize?project=web", json!({"instance_type": "k1-medium"})),
        409,
        "InvalidState",
    );
    assert!(msg.contains("'running'"), "{msg}");
    act(&k, "web", "vm1", "stop", "stopping");
    k.wait_state("web", "vm1", "stopped", WAIT);
    let resize = |t: &str| {
        let (s, v) = k.post("/v1/instances/vm1/resize?project=web", json!({ "instance_type": t }));
        assert_eq!(s, 200, "resize to {t}: {v}");
        assert_eq!(v["instance_type"], t, "{v}");
        assert_eq!(v["state"], "stopped", "{v}");
        (
            v["vcpus"].as_i64().unwrap_or(-1),
            v["memory_mib"].as_i64().unwrap_or(-1),
            v["disk_gib"].as_i64().unwrap_or(-1),
        )
    };
    assert_eq!(resize("k1-medium"), (2, 1024, 10));
    assert_eq!(used(&k), (2, 1024, 10, 0));
    // Smaller type: CPU and memory shrink, the disk never does.
    assert_eq!(resize("k1-nano"), (1, 128, 10));
    assert_eq!(used(&k), (1, 128, 10, 0));
    assert_eq!(resize("k1-small"), (1, 512, 10));
    assert_error(
        k.post("/v1/instances/vm1/resize?project=web", json!({"instance_type": "k9-huge"})),
        400,
        "InvalidValue",
    );
    assert_error(k.post("/v1/instances/vm1/resize?project=web", json!({})), 400, "InvalidValue");
    let (_, v) = k.get("/v1/instances/vm1?project=web");
    assert_eq!((&v["instance_type"], &v["disk_gib"]), (&json!("k1-small"), &json!(10)), "{v}");
    act(&k, "web", "vm1", "start", "starting");
    let v = k.wait_state("web", "vm1", "running", WAIT);
    assert_eq!((&v["vcpus"], &v["memory_mib"], &v["disk_gib"]), (&json!(1), &json!(512), &json!(10)), "{v}");

    delete_instance(&k, "web", "vm1");
    assert_error(k.get("/v1/instances/vm1?project=web"), 404, "NotFound");
    assert_error(k.get(&format!("/v1/instances/{id}?project=web")), 404, "NotFound");
    assert_error(k.delete("/v1/instances/vm1?project=web"), 404, "NotFound");
    assert!(instance_names(&k, "web").is_empty());
    assert_eq!(used(&k), (0, 0, 0, 0));

    // The name is free again; the new instance is a new one.
    let v = running_instance(&k, "web", "vm1", "k1-nano");
    assert_ne!(v["id"].as_str(), Some(id.as_str()), "{v}");
    assert_eq!(v["disk_gib"], 1, "{v}");
}

#[test]
fn instance_selected_by_id_needs_no_project() {
    let k = roomy();
    k.create_project("web");
    let v = running_instance(&k, "web", "vm1", "k1-nano");
    let id = v["id"].as_str().expect("id");
    let (s, by_id) = k.get(&format!("/v1/instances/{id}"));
    assert_eq!(s, 200, "{by_id}");
    assert_eq!(by_id["name"], "vm1");
    let (s, v) = k.post_empty(&format!("/v1/instances/{id}/stop"));
    assert_eq!((s, &v["state"]), (202, &json!("stopping")), "{v}");
    k.wait_state("web", "vm1", "stopped", WAIT);
    // A name still needs its project.
    let msg = assert_error(k.get("/v1/instances/vm1"), 400, "InvalidValue");
    assert!(msg.contains("project"), "{msg}");
    assert_error(k.get(&format!("/v1/instances/{}", uuid::Uuid::new_v4())), 404, "NotFound");
    // An id of another project's instance is not found through that project.
    k.create_project("other");
    assert_error(k.get(&format!("/v1/instances/{id}?project=other")), 404, "NotFound");
}

#[test]
fn serial_console_is_text_with_a_next_offset() {
    let k = roomy();
    k.create_project("web");
    running_instance(&k, "web", "vm1", "k1-nano");
    let read = |query: &str| {
        let (s, h, v) = send(
            raw(&k, Method::GET, &format!("/v1/instances/vm1/serial-console?project=web{query}")).bearer_auth(&k.token),
        );
        assert_eq!(s, 200, "{v}");
        let ct = h.get("content-type").and_then(|c| c.to_str().ok()).unwrap_or_default().to_string();
        assert!(ct.starts_with("text/plain"), "{ct}");
        let next: u64 = h
            .get("kumo-serial-next-offset")
            .and_then(|c| c.to_str().ok())
            .and_then(|c| c.parse().ok())
            .expect("kumo-serial-next-offset header");
        // Nothing trimmed here: the first byte is the one asked for (or the end).
        let start: u64 = h
            .get("kumo-serial-start-offset")
            .and_then(|c| c.to_str().ok())
            .and_then(|c| c.parse().ok())
            .expect("kumo-serial-start-offset header");
        assert!(h.get("kumo-serial-skipped-bytes").is_none());
        let text = v.as_str().map(String::from).unwrap_or_else(|| v.to_string());
        assert_eq!(start + text.len() as u64, next);
        (text, next)
    };
    let (all, next) = read("");
    assert!(all.contains("simulated"), "{all}");
    assert_eq!(next, all.len() as u64);
    // Nothing new from the end.
    assert_eq!(read(&format!("&offset={next}")), (String::new(), next));
    assert_eq!(read("&offset=5"), (all[5..].to_string(), next));
    assert_eq!(read("&offset=2&max_bytes=10"), (all[2..12].to_string(), 12));
    assert_eq!(read("&offset=999999"), (String::new(), next));
    // Following: a reboot appends, read from where we were.
    act(&k, "web", "vm1", "reboot", "rebooting");
    k.wait_state("web", "vm1", "running", WAIT);
    let (more, after) = read(&format!("&offset={next}"));
    assert!(!more.is_empty() && after == next + more.len() as u64, "{more:?} {after}");
    assert!(more.contains("reset"), "{more}");
    assert_error(k.get("/v1/instances/vm1/serial-console?project=web&offset=-1"), 400, "InvalidValue");
    assert_error(k.get("/v1/instances/nope/serial-console?project=web"), 404, "NotFound");
}

#[test]
fn events_record_every_transition_in_order_with_causes() {
    let k = roomy();
    k.create_project("web");
    let v = running_instance(&k, "web", "vm1", "k1-nano");
    let id = v["id"].as_str().expect("id").to_string();
    running_instance(&k, "web", "other", "k1-nano");
    act(&k, "web", "vm1", "stop", "stopping");
    k.wait_state("web", "vm1", "stopped", WAIT);
    act(&k, "web", "vm1", "start", "starting");
    k.wait_state("web", "vm1", "running", WAIT);
    act(&k, "web", "vm1", "reboot", "rebooting");
    k.wait_state("web", "vm1", "running", WAIT);

    let expected_live = [
        ("created", None, "creating", "api: instance_create"),
        ("state_changed", Some("creating"), "starting", "reconciler: "),
        ("state_changed", Some("starting"), "running", "reconciler: "),
        ("state_changed", Some("running"), "stopping", "api: instance_stop"),
        ("state_changed", Some("stopping"), "stopped", "reconciler: "),
        ("state_changed", Some("stopped"), "starting", "api: instance_start"),
        ("state_changed", Some("starting"), "running", "reconciler: "),
        ("state_changed", Some("running"), "rebooting", "api: instance_reboot"),
        ("state_changed", Some("rebooting"), "running", "reconciler: "),
    ];
    let check = |evs: &[Value], expected: &[(&str, Option<&str>, &str, &str)]| {
        let got: Vec<String> = evs
            .iter()
            .map(|e| format!("{} {}->{} ({})", e["kind"], e["from_state"], e["to_state"], e["cause"]))
            .collect();
        assert_eq!(evs.len(), expected.len(), "events:\n{}", got.join("\n"));
        for (e, (kind, from, to, cause)) in evs.iter().zip(expected) {
            assert_eq!(e["kind"], *kind, "events:\n{}", got.join("\n"));
            assert_eq!(e["from_state"], json!(from), "events:\n{}", got.join("\n"));
            assert_eq!(e["to_state"], *to, "events:\n{}", got.join("\n"));
            let c = e["cause"].as_str().unwrap_or_default();
            assert!(c.starts_with(cause), "cause {c:?} should start with {cause:?}");
            assert_eq!(e["resource_type"], "instance");
            assert_eq!(e["resource_id"], json!(id));
            assert_eq!(e["resource_name"], "vm1");
            assert_eq!(e["project"], "web");
        }
        let times: Vec<String> = evs.iter().map(|e| time_key(&e["time_created"])).collect();
        assert!(times.windows(2).all(|w| w[0] <= w[1]), "not oldest first: {times:?}");
    };
    // API causes name the caller and the request.
    let evs = events(&k, "web", Some("vm1"));
    check(&evs, &expected_live);
    assert!(evs[0]["cause"].as_str().unwrap_or_default().contains("operator token 'admin'"), "{}", evs[0]);
    check(&events(&k, "web", Some(&id)), &expected_live);

    // The project-wide list has the project's creation and both instances.
    let all = events(&k, "web", None);
    assert_eq!(all[0]["resource_type"], "project", "{}", all[0]);
    assert!(all.iter().any(|e| e["resource_name"] == "other"));
    assert_eq!(all.iter().filter(|e| e["resource_name"] == "vm1").count(), expected_live.len());

    // After deletion the history stays, reachable by id.
    delete_instance(&k, "web", "vm1");
    let mut expected = expected_live.to_vec();
    expected.push(("state_changed", Some("running"), "deleting", "api: instance_delete"));
    expected.push(("state_changed", Some("deleting"), "destroyed", "reconciler: "));
    check(&events(&k, "web", Some(&id)), &expected);

    assert_error(k.get("/v1/events?project=web&instance=nope"), 404, "NotFound");
    assert_error(k.get("/v1/events"), 400, "InvalidValue");
    assert_error(k.get("/v1/events?project=nope"), 404, "NotFound");
}

#[test]
fn actions_in_the_wrong_state_are_409_naming_the_state() {
    let k = roomy();
    k.create_project("web");
    running_instance(&k, "web", "vm1", "k1-nano");
    let msg = assert_error(k.post_empty("/v1/instances/vm1/start?project=web"), 409, "InvalidState");
    assert!(msg.contains("'running'"), "{msg}");
    act(&k, "web", "vm1", "stop", "stopping");
    k.wait_state("web", "vm1", "stopped", WAIT);
    let msg = assert_error(k.post_empty("/v1/instances/vm1/stop?project=web"), 409, "InvalidState");
    assert!(msg.contains("'stopped'"), "{msg}");
    let msg = assert_error(k.post_empty("/v1/instances/vm1/reboot?project=web"), 409, "InvalidState");
    assert!(msg.contains("'stopped'") && msg.contains("start it"), "{msg}");
    // A cloud of one host has nowhere to move an instance to.
    let msg = assert_error(k.post("/v1/instances/vm1/migrate?project=web", json!({})), 409, "InvalidState");
    assert!(msg.contains("the only host"), "{msg}");
    // Refused actions changed nothing.
    let (_, v) = k.get("/v1/instances/vm1?project=web");
    assert_eq!(v["state"], "stopped", "{v}");
    let evs = events(&k, "web", Some("vm1"));
    assert_eq!(evs.last().expect("events")["to_state"], "stopped");
    assert_eq!(evs.len(), 5, "{evs:?}");
    assert_error(k.post_empty("/v1/instances/nope/stop?project=web"), 404, "NotFound");
}

#[test]
fn bad_input_is_refused_and_changes_nothing() {
    let k = roomy();
    k.create_project("web");
    let body = |extra: Value| {
        let mut b = json!({"name": "vm1", "image": IMAGE, "instance_type": "k1-nano"});
        for (key, val) in extra.as_object().expect("object") {
            if val.is_null() {
                b.as_object_mut().expect("object").remove(key);
            } else {
                b[key] = val.clone();
            }
        }
        b.to_string()
    };
    let post = |query: &str, ct: &str, body: String| {
        let url = format!("{}/v1/instances{query}", k.url);
        let (s, _, v) = send(k.http.post(url).bearer_auth(&k.token).header("content-type", ct).body(body));
        (s, v)
    };
    /// What is sent (query, content type, body) and what must come back (status, code, a word of the message).
    struct Case {
        what: &'static str,
        query: &'static str,
        ct: &'static str,
        body: String,
        status: u16,
        code: &'static str,
        mention: &'static str,
    }
    let case =
        |what, ct, body, status, code, mention| Case { what, query: "?project=web", ct, body, status, code, mention };
    let (json_ct, bad) = ("application/json", "InvalidValue");
    let cases = [
        case("malformed JSON", json_ct, r#"{"name": "vm1","#.into(), 400, bad, ""),
        case("not an object", json_ct, "[1,2]".into(), 400, bad, ""),
        case("wrong content type", "text/plain", body(json!({})), 400, bad, "application/json"),
        case("no body", json_ct, String::new(), 400, bad, ""),
        case("unknown field", json_ct, body(json!({"colour": "red"})), 400, bad, "colour"),
        case("missing field", json_ct, body(json!({"instance_type": null})), 400, bad, "instance_type"),
        case("wrong type", json_ct, body(json!({"name": 7})), 400, bad, ""),
        case("bad name", json_ct, body(json!({"name": "Web_1"})), 400, bad, "uppercase"),
        case("unknown image", json_ct, body(json!({"image": "nope"})), 400, bad, "'nope'"),
        case("unknown type", json_ct, body(json!({"instance_type": "k9-huge"})), 400, bad, "k9-huge"),
        case(
            "user_data > 32 KiB",
            json_ct,
            body(json!({"user_data": "#".repeat(32 * 1024 + 1)})),
            400,
            bad,
            "user_data",
        ),
        case("long description", json_ct, body(json!({"description": "d".repeat(513)})), 400, bad, "description"),
        case("body > 64 KiB", json_ct, body(json!({"user_data": "#".repeat(70 * 1024)})), 413, "PayloadTooLarge", ""),
        Case { query: "", ..case("missing project", json_ct, body(json!({})), 400, bad, "project") },
        Case { query: "?project=nope", ..case("unknown project", json_ct, body(json!({})), 404, "NotFound", "'nope'") },
    ];
    for c in cases {
        let msg = assert_error(post(c.query, c.ct, c.body), c.status, c.code);
        assert!(msg.contains(c.mention), "{}: message should mention {:?}: {msg}", c.what, c.mention);
        assert!(instance_names(&k, "web").is_empty(), "{} created an instance", c.what);
        assert_eq!(used(&k), (0, 0, 0, 0), "{} reserved capacity", c.what);
    }
    // The connection is still usable and the same request done right works.
    let (s, v) = post("?project=web", json_ct, body(json!({})));
    assert_eq!(s, 202, "{v}");
    assert_eq!(used(&k), (1, 128, 1, 0));
    // A duplicate name is refused after scheduling: its reservation is rolled back.
    let msg = assert_error(post("?project=web", json_ct, body(json!({}))), 409, "ObjectAlreadyExists");
    assert!(msg.contains("'vm1'"), "{msg}");
    assert_eq!(used(&k), (1, 128, 1, 0), "the refused duplicate kept a reservation");
    // Only that one instance was ever created.
    let evs = events(&k, "web", None);
    let created = evs.iter().filter(|e| e["resource_type"] == "instance" && e["kind"] == "created").count();
    assert_eq!(created, 1, "{evs:?}");
    // The image may be given by id.
    let (_, images) = k.get("/v1/images");
    let image_id = images["items"][0]["id"].as_str().expect("image id").to_string();
    let (s, v) = post("?project=web", json_ct, body(json!({"name": "vm2", "image": image_id})));
    assert_eq!((s, &v["image"]), (202, &json!(IMAGE)), "{v}");
    assert_eq!(instance_names(&k, "web"), ["vm1", "vm2"]);
}

/// With a slow hypervisor, users act on instances that are still on their way: delete one being
/// created, stop one being started. Both converge, and nothing stays reserved or on the host.
#[test]
fn actions_during_transitions_converge() {
    let k = cloud(&[
        "--host-vcpus",
        "16",
        "--host-memory-mib",
        "16384",
        "--host-disk-gib",
        "500",
        "--sim-latency-ms",
        "300",
    ]);
    k.create_project("web");
    let (s, v) = create_instance(&k, "web", "quitter", "k1-nano");
    assert_eq!((s, &v["state"]), (202, &json!("creating")), "{v}");
    let id = v["id"].as_str().expect("id").to_string();
    let (s, v) = k.delete("/v1/instances/quitter?project=web");
    assert_eq!((s, &v["state"]), (202, &json!("deleting")), "{v}");
    k.wait_state("web", "quitter", "gone", WAIT);
    assert_eq!(used(&k), (0, 0, 0, 0));
    let evs = events(&k, "web", Some(&id));
    let steps: Vec<(Value, Value)> = evs.iter().map(|e| (e["from_state"].clone(), e["to_state"].clone())).collect();
    assert_eq!(
        steps,
        [
            (Value::Null, json!("creating")),
            (json!("creating"), json!("deleting")),
            (json!("deleting"), json!("destroyed"))
        ],
        "{evs:?}"
    );

    let (s, v) = create_instance(&k, "web", "hasty", "k1-nano");
    assert_eq!(s, 202, "{v}");
    k.wait_state("web", "hasty", "starting", WAIT);
    act(&k, "web", "hasty", "stop", "stopping");
    k.wait_state("web", "hasty", "stopped", WAIT);
    let (s, v) = k.get("/v1/system/reconcilers");
    assert_eq!(s, 200, "{v}");
    // Once stopped it stays stopped (the late "booted" of the start was not applied).
    let evs = events(&k, "web", Some("hasty"));
    assert_eq!(evs.last().expect("event")["to_state"], "stopped", "{evs:?}");
    assert!(!evs.iter().any(|e| e["to_state"] == "running"), "{evs:?}");
    act(&k, "web", "hasty", "start", "starting");
    k.wait_state("web", "hasty", "running", WAIT);
    let (_, _, console) =
        send(raw(&k, Method::GET, "/v1/instances/hasty/serial-console?project=web").bearer_auth(&k.token));
    assert!(console.as_str().unwrap_or_default().contains("powered off"), "{console}");
    delete_instance(&k, "web", "hasty");
    assert_eq!(used(&k), (0, 0, 0, 0));
}

/// Issue 11: an internal error while preparing an instance (here its image's record cannot be
/// read) fails it with a reason that names the cause — not "see the server log", which a
/// background step has no request id for — and the server log holds the cause.
#[test]
fn an_internal_error_while_preparing_an_instance_names_its_cause() {
    let mut k = roomy();
    k.create_project("web");
    running_instance(&k, "web", "vm1", "k1-nano");
    act(&k, "web", "vm1", "stop", "stopping");
    k.wait_state("web", "vm1", "stopped", WAIT);
    // What starting it reads (its image's record) is damaged in the store.
    k.kill9();
    common::with_store(&k, async |tx| {
        sqlx::query("UPDATE images SET boot = 'floppy' WHERE id = (SELECT image_id FROM instances WHERE name = 'vm1')")
            .execute(&mut *tx)
            .await
            .expect("damage the image record");
    });
    k.restart();
    act(&k, "web", "vm1", "start", "starting");
    let v = k.wait_state("web", "vm1", "failed", WAIT);
    let reason = v["state_reason"].as_str().unwrap_or_default();
    assert!(reason.contains("image boot 'floppy'"), "the reason names the cause: {v}");
    assert!(!reason.contains("server log"), "{v}");
    let log = std::fs::read_to_string(k.data_dir().join("kumod.log")).unwrap_or_default();
    assert!(
        log.lines().any(|l| l.contains("ERROR") && l.contains("image boot 'floppy'")),
        "the log holds the cause:\n{}",
        k.log_tail(40)
    );
    // Still recoverable: deleting it works.
    delete_instance(&k, "web", "vm1");
}

/// Issue 12: an image that appears in the image cache while kumod runs (scripts/up.sh builds
/// debian-12 in the background) becomes public at the next rescan, without a restart; a new build
/// of a registered image takes its name; a directory without a manifest is not an image.
#[test]
fn an_image_built_while_kumod_runs_is_registered_without_a_restart() {
    let c = cloud(&["--image-rescan-seconds", "1"]);
    let (_, before) = c.get(&format!("/v1/images/{FIXTURE_IMAGE}"));
    let cache = c.images.path();
    let add = |dir: &str, manifest: Value| {
        let d = cache.join(dir);
        std::fs::create_dir_all(&d).expect("mkdir");
        std::fs::copy(cache.join(FIXTURE_IMAGE).join("disk.qcow2"), d.join("disk.qcow2")).expect("copy disk");
        std::fs::write(d.join("manifest.json"), manifest.to_string()).expect("manifest");
    };
    std::fs::create_dir(cache.join("half-built")).expect("mkdir");
    add(
        "later",
        json!({"name": "later", "os": "built later", "disk": "disk.qcow2", "os_family": "debian",
        "os_version": "12", "default_user": "debian", "min_memory_mib": 512, "min_disk_gib": 2}),
    );
    // A new build of the fixture (its manifest changed).
    let rebuilt = json!({"name": FIXTURE_IMAGE, "os": "test fixture, second build", "disk": "disk.qcow2"});
    std::fs::write(cache.join(FIXTURE_IMAGE).join("manifest.json"), rebuilt.to_string()).expect("manifest");
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let (s, later) = c.get("/v1/images/later");
        let (_, fixture) = c.get(&format!("/v1/images/{FIXTURE_IMAGE}"));
        if s == 200 && fixture["os"] == "test fixture, second build" {
            assert!(later["project"].is_null(), "public: {later}");
            assert_eq!(later["os_facts"]["default_user"], "debian", "{later}");
            assert_ne!(fixture["id"], before["id"], "a new build is a new image: {fixture}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "not registered by a rescan: {later}\n{}", c.log_tail(30));
        std::thread::sleep(Duration::from_millis(200));
    }
    let (_, v) = c.get("/v1/images");
    let names: Vec<&str> = v["items"].as_array().expect("items").iter().filter_map(|i| i["name"].as_str()).collect();
    assert!(!names.contains(&"half-built"), "{names:?}");
    let (_, tasks) = c.get("/v1/system/reconcilers");
    let images = tasks.as_array().and_then(|t| t.iter().find(|r| r["name"] == "images")).cloned().expect("images task");
    assert!(images["changes"].as_u64() >= Some(3) && images["errors"] == 0, "{images}");
    assert_eq!(images["period_seconds"], 1.0, "{images}");
}

/// Issue 11: every background task reports one status shape at `/v1/system/reconcilers`, and
/// its runs, errors and last pass duration in `/metrics`.
#[test]
fn every_background_task_reports_one_status_shape() {
    let k = cloud(&[]);
    let deadline = std::time::Instant::now() + WAIT;
    let all = loop {
        let (s, v) = k.get("/v1/system/reconcilers");
        assert_eq!(s, 200, "{v}");
        let items = v.as_array().cloned().unwrap_or_default();
        // A pass is counted when it starts and timed when it ends: wait for both.
        let ran = |name: &str| {
            items
                .iter()
                .any(|r| r["name"] == name && r["passes"].as_u64() > Some(0) && r["last_duration_seconds"].is_number())
        };
        if ["instances", "volumes", "network", "monitoring", "billing", "sweep", "images", "requests"]
            .iter()
            .all(|n| ran(n))
        {
            break items;
        }
        assert!(std::time::Instant::now() < deadline, "not every task ran: {v}");
        std::thread::sleep(Duration::from_millis(100));
    };
    let names: BTreeSet<&str> = all.iter().filter_map(|r| r["name"].as_str()).collect();
    let want: BTreeSet<&str> =
        ["instances", "volumes", "network", "monitoring", "billing", "audit_retention", "sweep", "images", "requests"]
            .into();
    assert_eq!(names, want);
    for r in &all {
        for field in ["passes", "changes", "errors", "in_flight", "leaks_collected", "quarantined", "period_seconds"] {
            assert!(r[field].is_number(), "{field} of {r}");
        }
        // Without --audit-retention-days the retention task does not run.
        let enabled = r["name"] != "audit_retention";
        assert_eq!(r["enabled"], enabled, "{r}");
        if enabled {
            assert!(r["period_seconds"].as_f64() > Some(0.0), "{r}");
            assert!(r["last_pass"].is_string() && r["last_duration_seconds"].is_number(), "{r}");
        }
    }
    let metrics = k.text("/metrics");
    for name in ["network", "sweep", "monitoring"] {
        let line = format!("kumo_reconciler_last_pass_duration_seconds{{reconciler=\"{name}\"}}");
        assert!(metrics.contains(&line), "{line} missing:\n{metrics}");
    }
}

// ---------------------------------------------------------------------------------------------
// Scheduler

#[test]
fn a_full_host_answers_507_naming_what_is_short_and_deleting_frees_room() {
    let k = cloud(&[
        "--host-vcpus",
        "2",
        "--cpu-overcommit",
        "1",
        "--host-memory-mib",
        "1024",
        "--memory-overcommit",
        "1",
        "--host-disk-gib",
        "100",
    ]);
    k.create_project("web");
    let h = host(&k);
    assert_eq!(
        (&h["vcpus_limit"], &h["memory_mib_limit"], &h["disk_gib_limit"]),
        (&json!(2), &json!(1024), &json!(100))
    );
    assert_eq!((&h["driver"], &h["accelerator"]), (&json!("sim"), &json!("simulated")), "{h}");
    assert_eq!(used(&k), (0, 0, 0, 0));

    running_instance(&k, "web", "a", "k1-small");
    assert_eq!(used(&k), (1, 512, 5, 0));
    running_instance(&k, "web", "b", "k1-small");
    assert_eq!(used(&k), (2, 1024, 10, 0));

    // Full on CPU and memory.
    let msg = assert_error(create_instance(&k, "web", "c", "k1-nano"), 507, "InsufficientCapacity");
    assert!(msg.contains("vCPUs") && msg.contains("memory") && !msg.contains("disk"), "{msg}");
    assert_eq!(instance_names(&k, "web"), ["a", "b"]);
    assert_eq!(used(&k), (2, 1024, 10, 0));

    delete_instance(&k, "web", "a");
    assert_eq!(used(&k), (1, 512, 5, 0));

    // Short of memory only.
    let (s, v) = k.post("/v1/instance-types", json!({"name": "m1-hog", "vcpus": 1, "memory_mib": 768, "disk_gib": 1}));
    assert_eq!(s, 201, "{v}");
    let msg = assert_error(create_instance(&k, "web", "hog", "m1-hog"), 507, "InsufficientCapacity");
    assert!(msg.contains("768 MiB of memory requested") && msg.contains("512 free"), "{msg}");
    assert!(!msg.contains("vCPUs"), "{msg}");

    running_instance(&k, "web", "c", "k1-nano");
    assert_eq!(used(&k), (2, 640, 6, 0));
    // Short of CPU only.
    let msg = assert_error(create_instance(&k, "web", "d", "k1-nano"), 507, "InsufficientCapacity");
    assert!(msg.contains("1 vCPUs requested, at most 0 free") && !msg.contains("memory"), "{msg}");

    // A resize that does not fit is refused and changes nothing (capacity nor type).
    act(&k, "web", "b", "stop", "stopping");
    k.wait_state("web", "b", "stopped", WAIT);
    let msg = assert_error(
        k.post("/v1/instances/b/resize?project=web", json!({"instance_type": "k1-medium"})),
        507,
        "InsufficientCapacity",
    );
    assert!(msg.contains("vCPUs"), "{msg}");
    let (_, v) = k.get("/v1/instances/b?project=web");
    assert_eq!((&v["instance_type"], &v["vcpus"], &v["memory_mib"]), (&json!("k1-small"), &json!(1), &json!(512)));
    assert_eq!(used(&k), (2, 640, 6, 0), "a stopped instance keeps its reservation");
    assert_eq!(instance_names(&k, "web"), ["b", "c"]);
}

#[test]
fn gpu_types_need_a_host_with_a_free_gpu() {
    let sizes = ["--host-vcpus", "8", "--host-memory-mib", "8192", "--host-disk-gib", "100"];
    {
        let k = cloud(&sizes);
        k.create_project("ml");
        assert_eq!(host(&k)["gpus_total"], 0);
        let msg = assert_error(create_instance(&k, "ml", "gpu1", "g1-small"), 507, "InsufficientCapacity");
        assert!(msg.contains("GPUs") && !msg.contains("vCPUs") && !msg.contains("memory"), "{msg}");
        assert!(instance_names(&k, "ml").is_empty());
        assert_eq!(used(&k), (0, 0, 0, 0));
    }
    let mut with_gpu = sizes.to_vec();
    with_gpu.extend(["--host-gpus", "1"]);
    let k = cloud(&with_gpu);
    k.create_project("ml");
    assert_eq!(host(&k)["gpus_total"], 1);
    let v = running_instance(&k, "ml", "gpu1", "g1-small");
    assert_eq!(v["instance_type"], "g1-small");
    assert_eq!(used(&k), (2, 2048, 20, 1));
    let msg = assert_error(create_instance(&k, "ml", "gpu2", "g1-small"), 507, "InsufficientCapacity");
    assert!(msg.contains("1 GPUs requested, at most 0 free"), "{msg}");
    // CPU-only types still fit beside it.
    running_instance(&k, "ml", "cpu1", "k1-nano");
    delete_instance(&k, "ml", "gpu1");
    assert_eq!(used(&k), (1, 128, 1, 0));
    running_instance(&k, "ml", "gpu2", "g1-small");
}

#[test]
fn concurrent_creates_never_overshoot_the_host() {
    let k = cloud(&[
        "--host-vcpus",
        "10",
        "--cpu-overcommit",
        "1",
        "--host-memory-mib",
        "65536",
        "--host-disk-gib",
        "1000",
    ]);
    k.create_project("load");
    let limit = host(&k)["vcpus_limit"].as_i64().expect("limit");
    assert_eq!(limit, 10);
    let barrier = std::sync::Barrier::new(30);
    let done = std::sync::atomic::AtomicBool::new(false);
    let (results, max_seen) = std::thread::scope(|s| {
        let monitor = s.spawn(|| {
            let mut max_seen = 0;
            while !done.load(std::sync::atomic::Ordering::SeqCst) {
                let h = host(&k);
                let u = h["vcpus_used"].as_i64().expect("used");
                assert!(u <= limit, "vcpus_used {u} exceeds the limit {limit}: {h}");
                max_seen = max_seen.max(u);
            }
            max_seen
        });
        let creators: Vec<_> = (0..30)
            .map(|i| {
                let (k, barrier) = (&k, &barrier);
                s.spawn(move || {
                    barrier.wait();
                    create_instance(k, "load", &format!("vm{i}"), "k1-nano")
                })
            })
            .collect();
        let results: Vec<(u16, Value)> = creators.into_iter().map(|c| c.join().expect("creator")).collect();
        done.store(true, std::sync::atomic::Ordering::SeqCst);
        (results, monitor.join().expect("monitor"))
    });
    let accepted = results.iter().filter(|(s, _)| *s == 202).count();
    for (s, v) in &results {
        assert!(
            *s == 202 || (*s == 507 && v["error_code"] == "InsufficientCapacity"),
            "unexpected answer {s}: {v}\n{}",
            k.log_tail(30)
        );
    }
    assert_eq!(accepted, 10, "exactly 10 fit");
    assert!(max_seen <= limit);
    let h = host(&k);
    assert_eq!((&h["vcpus_used"], &h["memory_mib_used"]), (&json!(10), &json!(1280)), "{h}");
    let (s, v) = k.get("/v1/instances?project=load");
    assert_eq!((s, names(&v).len()), (200, 10), "{v}");
    // They all converge.
    for n in names(&v) {
        k.wait_state("load", &n, "running", WAIT);
    }
}

// ---------------------------------------------------------------------------------------------
// Instance types

#[test]
fn operators_manage_the_instance_type_catalogue() {
    let k = roomy();
    let (s, v) = k.get("/v1/instance-types");
    assert_eq!(s, 200, "{v}");
    for t in ["k1-nano", "k1-small", "k1-medium", "k1-large", "g1-small"] {
        assert!(names(&v).iter().any(|n| n == t), "default type {t} missing: {v}");
    }
    let (s, v) = k.post(
        "/v1/instance-types",
        json!({"name": "m1-custom", "description": "3 odd vCPUs", "vcpus": 3, "memory_mib": 768, "disk_gib": 7}),
    );
    assert_eq!(s, 201, "{v}");
    assert_eq!(
        (&v["name"], &v["vcpus"], &v["memory_mib"], &v["disk_gib"], &v["gpus"]),
        (&json!("m1-custom"), &json!(3), &json!(768), &json!(7), &json!(0)),
        "{v}"
    );
    let (s, view) = k.get("/v1/instance-types/m1-custom");
    assert_eq!((s, view), (200, v));

    let base = json!({"name": "bad", "vcpus": 1, "memory_mib": 128, "disk_gib": 1});
    for (field, value) in [
        ("vcpus", 0),
        ("vcpus", 65),
        ("memory_mib", 63),
        ("memory_mib", 262_145),
        ("disk_gib", 0),
        ("disk_gib", 16_385),
        ("gpus", -1),
        ("gpus", 17),
    ] {
        let mut b = base.clone();
        b[field] = json!(value);
        let msg = assert_error(k.post("/v1/instance-types", b), 400, "InvalidValue");
        assert!(msg.contains(field) && msg.contains(&value.to_string()), "{field}={value}: {msg}");
    }
    assert_error(
        k.post("/v1/instance-types", json!({"name": "Bad_Type", "vcpus": 1, "memory_mib": 128, "disk_gib": 1})),
        400,
        "InvalidValue",
    );
    assert_error(
        k.post("/v1/instance-types", json!({"name": "nomem", "vcpus": 1, "disk_gib": 1})),
        400,
        "InvalidValue",
    );
    assert_error(k.get("/v1/instance-types/bad"), 404, "NotFound");
    for dup in ["m1-custom", "k1-nano"] {
        let msg = assert_error(
            k.post("/v1/instance-types", json!({"name": dup, "vcpus": 1, "memory_mib": 128, "disk_gib": 1})),
            409,
            "ObjectAlreadyExists",
        );
        assert!(msg.contains(dup), "{msg}");
    }

    k.create_project("web");
    let v = running_instance(&k, "web", "vm1", "m1-custom");
    assert_eq!((&v["vcpus"], &v["memory_mib"], &v["disk_gib"]), (&json!(3), &json!(768), &json!(7)), "{v}");
    let msg = assert_error(k.delete("/v1/instance-types/m1-custom"), 409, "InvalidState");
    assert!(msg.contains("1 instance"), "{msg}");
    delete_instance(&k, "web", "vm1");
    let (s, v) = k.delete("/v1/instance-types/m1-custom");
    assert_eq!(s, 204, "{v}");
    assert_error(k.get("/v1/instance-types/m1-custom"), 404, "NotFound");
    assert_error(k.delete("/v1/instance-types/m1-custom"), 404, "NotFound");
    assert_error(create_instance(&k, "web", "vm2", "m1-custom"), 400, "InvalidValue");
    // The name can be used again.
    let (s, v) =
        k.post("/v1/instance-types", json!({"name": "m1-custom", "vcpus": 1, "memory_mib": 256, "disk_gib": 2}));
    assert_eq!(s, 201, "{v}");
}

// ---------------------------------------------------------------------------------------------
// Restart

#[test]
fn restart_keeps_the_cloud_and_reports_lost_sim_guests_stopped() {
    let mut k = roomy();
    k.create_project("web");
    running_instance(&k, "web", "up", "k1-small");
    running_instance(&k, "web", "down", "k1-nano");
    act(&k, "web", "down", "stop", "stopping");
    k.wait_state("web", "down", "stopped", WAIT);
    let token = k.token.clone();
    let events_before = events(&k, "web", Some("up")).len();
    let used_before = used(&k);

    k.restart();

    assert_eq!(k.token, token, "the admin token changed");
    let (s, headers, v) = send(raw(&k, Method::GET, "/v1/me").bearer_auth(&token));
    assert_eq!(s, 200, "{v} {headers:?}");
    let (s, v) = k.get("/v1/projects/web");
    assert_eq!(s, 200, "{v}");
    assert_eq!(instance_names(&k, "web"), ["down", "up"]);
    // The sim driver's guests lived in the old process: the reconciler finds "up" gone and
    // records it as stopped, saying why. "down" stays stopped.
    k.wait_state("web", "up", "stopped", WAIT);
    let evs = events(&k, "web", Some("up"));
    assert_eq!(evs.len(), events_before + 1, "{evs:?}");
    let last = evs.last().expect("event");
    assert_eq!((&last["from_state"], &last["to_state"]), (&json!("running"), &json!("stopped")), "{last}");
    assert!(last["cause"].as_str().unwrap_or_default().starts_with("reconciler: "), "{last}");
    let (_, v) = k.get("/v1/instances/down?project=web");
    assert_eq!(v["state"], "stopped", "{v}");
    // Reservations survive (stopped instances keep theirs), and the instances start again.
    assert_eq!(used(&k), used_before);
    act(&k, "web", "up", "start", "starting");
    k.wait_state("web", "up", "running", WAIT);
    act(&k, "web", "down", "start", "starting");
    k.wait_state("web", "down", "running", WAIT);
    // The name index and the catalogue survived too.
    assert_error(create_instance(&k, "web", "up", "k1-nano"), 409, "ObjectAlreadyExists");
}

// ---------------------------------------------------------------------------------------------
// OpenAPI

/// Every operation in the served OpenAPI document refuses a call without (valid) credentials.
/// Adding an operation outside the authenticated router makes this fail.
#[test]
fn every_documented_operation_requires_authentication() {
    let k = cloud(&[]);
    let (s, _, doc) = send(raw(&k, Method::GET, "/v1/openapi.json"));
    assert_eq!(s, 200);
    let paths = doc["paths"].as_object().expect("paths");
    let mut ops = BTreeSet::new();
    let mut problems = Vec::new();
    for (path, item) in paths {
        for (method, op) in item.as_object().expect("path item") {
            let Ok(m) = Method::from_bytes(method.to_uppercase().as_bytes()) else { continue };
            if !["GET", "POST", "PUT", "PATCH", "DELETE"].contains(&m.as_str()) {
                continue;
            }
            let id = op["operationId"].as_str().unwrap_or(path).to_string();
            // Documented as needing no credentials (`security: [{}]`): login. tests/authz.rs
            // checks those by name.
            let public = op["security"]
                .as_array()
                .is_some_and(|s| s.iter().any(|r| r.as_object().is_some_and(|o| o.is_empty())));
            if public {
                continue;
            }
            ops.insert(id.clone());
            // Dummy path parameters; a project selector in case it is needed.
            let concrete: String = path
                .split('/')
                .map(|seg| if seg.starts_with('{') { "dummy" } else { seg })
                .collect::<Vec<_>>()
                .join("/");
            let url = format!("{concrete}?project=dummy&name=dummy");
            let creds = [None, Some(format!("Bearer kumo_{}", "f".repeat(64)))];
            for cred in creds {
                let mut req = raw(&k, m.clone(), &url);
                if m == Method::POST || m == Method::PUT || m == Method::PATCH {
                    req = req.header("content-type", "application/json").body("{}");
                }
                if let Some(c) = &cred {
                    req = req.header("authorization", c);
                }
                let (s, headers, v) = send(req);
                let rid_ok = headers.get("x-request-id").and_then(|h| h.to_str().ok()) == v["request_id"].as_str();
                if s != 401 || v["error_code"] != "Unauthenticated" || !rid_ok {
                    let how = if cred.is_some() { "a wrong token" } else { "no credentials" };
                    problems.push(format!("{id} ({} {path}) with {how}: {s} {v}", m.as_str()));
                }
            }
        }
    }
    assert!(problems.is_empty(), "operations reachable without authentication:\n{}", problems.join("\n"));
    let expected = [
        "project_list",
        "project_create",
        "project_view",
        "project_delete",
        "image_list",
        "image_import",
        "image_view",
        "image_delete",
        "instance_type_list",
        "instance_type_create",
        "instance_type_view",
        "instance_type_delete",
        "instance_list",
        "instance_create",
        "instance_view",
        "instance_delete",
        "instance_start",
        "instance_stop",
        "instance_reboot",
        "instance_resize",
        "instance_migrate",
        "instance_serial_console",
        "event_list",
        "host_list",
        "host_view",
        "me_view",
        "reconciler_list",
    ];
    let missing: Vec<&str> = expected.iter().copied().filter(|e| !ops.contains(*e)).collect();
    assert!(missing.is_empty(), "operations missing from the document: {missing:?} (has {ops:?})");
    // Nothing was created by all those calls.
    let (s, v) = k.get("/v1/projects");
    assert_eq!((s, names(&v)), (200, vec![]), "{v}");
}

#[test]
fn wrong_method_is_405_with_the_error_body_and_bearer_scheme_is_case_insensitive() {
    let k = Kumod::sim(&[]);
    let resp = k.http.put(format!("{}/v1/projects", k.url)).bearer_auth(&k.token).send().unwrap();
    assert_eq!(resp.status().as_u16(), 405);
    let v: serde_json::Value = resp.json().unwrap();
    assert_eq!(v["error_code"], "MethodNotAllowed", "{v}");
    let resp =
        k.http.get(format!("{}/v1/me", k.url)).header("authorization", format!("bearer {}", k.token)).send().unwrap();
    assert_eq!(resp.status().as_u16(), 200);
}

/// The public images by name → id.
fn public_images(k: &Kumod) -> std::collections::BTreeMap<String, String> {
    let (s, v) = k.get("/v1/images");
    assert_eq!(s, 200, "{v}");
    let items = v["items"].as_array().expect("items");
    items.iter().map(|i| (i["name"].as_str().unwrap().to_string(), i["id"].as_str().unwrap().to_string())).collect()
}

#[test]
fn a_new_build_in_the_image_cache_takes_the_name_at_the_next_start() {
    let mut c = cloud(&[]);
    let first = public_images(&c)[IMAGE].clone();
    c.restart();
    assert_eq!(public_images(&c)[IMAGE], first, "the same build is not registered twice");

    // An instance uses the first build; then the cache gets a new build (as up.sh does).
    c.create_project("demo");
    assert_eq!(create_instance(&c, "demo", "vm1", "k1-nano").0, 202);
    c.wait_state("demo", "vm1", "running", Duration::from_secs(30));
    let manifest = c.images.path().join(IMAGE).join("manifest.json");
    let rebuild = |os: &str| {
        let mut m: Value = serde_json::from_slice(&std::fs::read(&manifest).unwrap()).unwrap();
        m["os"] = json!(os);
        std::fs::write(&manifest, m.to_string()).unwrap();
    };
    rebuild("second build");
    c.restart();
    let images = public_images(&c);
    let second = images[IMAGE].clone();
    assert_ne!(second, first, "{images:?}");
    // The first build backs vm1's disk: it stays, under a name that says which build it is.
    let renamed = format!("{IMAGE}-{}", &first[..8]);
    assert_eq!(images.get(&renamed), Some(&first), "{images:?}");
    let (s, v) = c.get("/v1/instances/vm1?project=demo");
    assert_eq!((s, v["image"].as_str()), (200, Some(renamed.as_str())), "{v}");

    // A third build: the second is unused, so it goes (record and files).
    let second_dir = c.data_dir().join("images").join(&second);
    assert!(second_dir.exists());
    rebuild("third build");
    c.restart();
    let images = public_images(&c);
    assert!(!images.values().any(|id| *id == second), "{images:?}");
    assert!(!second_dir.exists(), "the unused build's files were not removed");
    assert_eq!(images.len(), 2, "the third build and the first (in use): {images:?}");
}

/// Issue 12: an image carries its OS facts from the cache's manifest into the catalogue; an
/// instance type with less memory than the image's minimum is refused at create and at resize
/// (400, nothing made or changed), and the root disk grows to the image's minimum disk.
#[test]
fn images_carry_their_os_facts_and_refuse_types_below_their_minimum() {
    let mut c = cloud(&[]);
    let dir = c.images.path().join("bigos");
    std::fs::create_dir(&dir).unwrap();
    std::fs::copy(c.images.path().join(IMAGE).join("disk.qcow2"), dir.join("disk.qcow2")).unwrap();
    let manifest = json!({"name": "bigos", "os": "Big OS 12", "disk": "disk.qcow2",
        "description": "a distribution that needs room", "os_family": "bigos", "os_version": "12",
        "default_user": "admin", "min_memory_mib": 512, "min_disk_gib": 8});
    std::fs::write(dir.join("manifest.json"), manifest.to_string()).unwrap();
    c.restart();
    let (s, v) = c.get("/v1/images/bigos");
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["description"], "a distribution that needs room", "{v}");
    assert_eq!(
        v["os_facts"],
        json!({"os_family": "bigos", "os_version": "12", "default_user": "admin", "min_memory_mib": 512, "min_disk_gib": 8}),
        "{v}"
    );
    // A manifest without facts: all null.
    let (_, v) = c.get(&format!("/v1/images/{IMAGE}"));
    assert_eq!(v["os_facts"]["default_user"], Value::Null, "{v}");
    assert_eq!(v["os_facts"]["min_memory_mib"], Value::Null, "{v}");

    c.create_project("os");
    let create =
        |t: &str| c.post("/v1/instances?project=os", json!({"name": "vm1", "image": "bigos", "instance_type": t}));
    let msg = assert_error(create("k1-nano"), 400, "InvalidValue");
    assert!(msg.contains("512 MiB") && msg.contains("k1-nano") && msg.contains("128 MiB"), "{msg}");
    assert_eq!(instance_names(&c, "os"), Vec::<String>::new(), "a refused create made an instance");
    assert_eq!(used(&c), (0, 0, 0, 0), "a refused create reserved capacity");

    let (s, v) = create("k1-small");
    assert_eq!(s, 202, "{v}");
    c.wait_state("os", "vm1", "running", WAIT);
    assert_eq!(used(&c), (1, 512, 8, 0), "the root disk grows to the image's minimum disk");
    act(&c, "os", "vm1", "stop", "stopping");
    c.wait_state("os", "vm1", "stopped", WAIT);
    let msg = assert_error(
        c.post("/v1/instances/vm1/resize?project=os", json!({"instance_type": "k1-nano"})),
        400,
        "InvalidValue",
    );
    assert!(msg.contains("512 MiB"), "{msg}");
    let (_, v) = c.get("/v1/instances/vm1?project=os");
    assert_eq!(v["instance_type"], "k1-small", "a refused resize changed the instance: {v}");
    assert_eq!(used(&c), (1, 512, 8, 0));
}

/// Issue 12: an import may say its image's OS facts (query parameters of `POST
/// /v1/images/import`); they become its `os_facts`, and its minimum memory refuses smaller types as
/// a public image's does. Bad values are refused with 400 before the upload is read: no image, no
/// files, no quota used.
#[test]
fn an_import_carries_the_os_facts_it_is_given_and_bad_ones_are_refused() {
    let c = cloud(&[]);
    c.create_project("os");
    let import = |query: &str| {
        let resp = c
            .http
            .post(format!("{}/v1/images/import?project=os&{query}", c.url))
            .bearer_auth(&c.token)
            .header("content-type", "application/octet-stream")
            .body(c.fixture_bytes())
            .send()
            .expect("import");
        let status = resp.status().as_u16();
        (status, resp.json::<Value>().unwrap_or(Value::Null))
    };
    let image_dirs = || std::fs::read_dir(c.data_dir().join("images")).expect("images dir").count();
    let dirs_before = image_dirs();
    let long_user = "u".repeat(33);
    let long_family = "d".repeat(65);
    let bad = [
        ("default_user=Admin".to_string(), "default_user"),
        ("default_user=-oProxyCommand%3Dsh".into(), "default_user"),
        ("default_user=ad%20min".into(), "default_user"),
        ("default_user=".into(), "default_user"),
        (format!("default_user={long_user}"), "default_user"),
        ("min_memory_mib=0".into(), "min_memory_mib"),
        ("min_memory_mib=-512".into(), "min_memory_mib"),
        ("min_memory_mib=99999999".into(), "min_memory_mib"),
        ("min_memory_mib=lots".into(), "min_memory_mib"),
        ("min_disk_gib=0".into(), "min_disk_gib"),
        ("min_disk_gib=100000".into(), "min_disk_gib"),
        (format!("os_family={long_family}"), "os_family"),
        ("os_family=Debian%20GNU%2FLinux".into(), "os_family"),
        ("os_family=debian&os_version=12%3B".into(), "os_version"),
        ("os_version=12".into(), "os_family"),
    ];
    for (query, field) in &bad {
        let msg = assert_error(import(&format!("name=bad&{query}")), 400, "InvalidValue");
        assert!(msg.contains(field), "{query}: the message names {field}: {msg}");
    }
    assert_eq!(c.get("/v1/images/bad?project=os").0, 404, "a refused import made an image");
    assert_eq!(image_dirs(), dirs_before, "a refused import left files in the image store");
    let (_, q) = c.get("/v1/projects/os/quotas");
    assert_eq!((q["used"]["images"].as_i64(), q["used"]["storage_gib"].as_i64()), (Some(0), Some(0)), "{q}");

    let facts = json!({"os_family": "bigos", "os_version": "12.1", "default_user": "admin", "min_memory_mib": 512,
        "min_disk_gib": 8});
    let (s, v) =
        import("name=bigos&os_family=bigos&os_version=12.1&default_user=admin&min_memory_mib=512&min_disk_gib=8");
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["os_facts"], facts, "{v}");
    let (s, v) = c.get("/v1/images/bigos?project=os");
    assert_eq!((s, &v["os_facts"]), (200, &facts), "{v}");
    // Without facts: all null, as before.
    let (s, v) = import("name=plain");
    assert_eq!(s, 201, "{v}");
    let nulls = json!({"os_family": null, "os_version": null, "default_user": null, "min_memory_mib": null,
        "min_disk_gib": null});
    assert_eq!(v["os_facts"], nulls, "{v}");

    let create =
        |t: &str| c.post("/v1/instances?project=os", json!({"name": "vm1", "image": "bigos", "instance_type": t}));
    let msg = assert_error(create("k1-nano"), 400, "InvalidValue");
    assert!(msg.contains("'bigos' needs at least 512 MiB") && msg.contains("k1-nano"), "{msg}");
    assert_eq!(instance_names(&c, "os"), Vec::<String>::new(), "a refused create made an instance");
    let (s, v) = create("k1-small");
    assert_eq!(s, 202, "{v}");
    c.wait_state("os", "vm1", "running", WAIT);
    assert_eq!(used(&c), (1, 512, 8, 0), "the root disk grows to the imported image's minimum disk");
}

/// Issue 10, item 16: the suites run on the database the run asks for (KUMO_TEST_DATABASE): on
/// PostgreSQL each kumod has a fresh database of its own that holds what the API made, and no
/// SQLite file; never silently SQLite.
#[test]
fn kumod_runs_on_the_database_the_tests_ask_for() {
    let mut k = cloud(&[]);
    k.create_project("probe");
    k.kill9();
    let pg = common::on_postgres();
    assert_eq!(k.database_url().starts_with("postgres://"), pg, "{}", k.database_url());
    assert_eq!(k.data_dir().join("kumo.db").exists(), !pg, "a SQLite file exists only on SQLite");
    let mut found = None;
    common::with_store(&k, async |tx| {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM projects WHERE name = 'probe'")
            .fetch_one(&mut *tx)
            .await
            .expect("count projects");
        found = Some(n);
    });
    assert_eq!(found, Some(1), "the project is in {}", k.database_url());
}

/// Runs the `kumo` CLI as the operator; returns its stdout (it must succeed).
fn kumo_cli(k: &Kumod, args: &[&str]) -> String {
    kumo_cli_as(k, &k.token, args)
}

/// Runs the `kumo` CLI with `token`; returns its stdout (it must succeed).
fn kumo_cli_as(k: &Kumod, token: &str, args: &[&str]) -> String {
    let out = kumo_cli_output(k, token, args);
    assert!(out.status.success(), "kumo {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs the `kumo` CLI with `token`, whatever it answers.
fn kumo_cli_output(k: &Kumod, token: &str, args: &[&str]) -> std::process::Output {
    std::process::Command::new(common::kumo_binary())
        .args(args)
        .env("KUMO_URL", &k.url)
        .env("KUMO_TOKEN", token)
        .env("KUMO_CONFIG", k.data_dir().join("cli-config.json"))
        .env_remove("KUMO_PROJECT")
        .output()
        .expect("run kumo (cargo build --workspace --bins first)")
}

#[test]
fn zones_join_tokens_and_cordoned_hosts() {
    let k = roomy();
    k.create_project("web");
    // The all-in-one's host is in zone `default`, in process, ready.
    let h = host(&k);
    let name = h["name"].as_str().expect("host name").to_string();
    assert_eq!(
        (&h["zone"], &h["state"], &h["role"], &h["cordoned"]),
        (&json!("default"), &json!("ready"), &json!("local"), &json!(false)),
        "{h}"
    );
    assert!(h["last_seen"].is_null() && h["address"].is_null(), "{h}");

    // Zones: `default` sums its host's capacity; create, duplicates, bad names, list, view.
    let (s, d) = k.get("/v1/zones/default");
    assert_eq!((s, &d["hosts"], &d["vcpus_limit"], &d["vcpus_used"]), (200, &json!(1), &h["vcpus_limit"], &json!(0)));
    let (s, v) = k.post("/v1/zones", json!({"name": "east", "description": "the east room"}));
    assert_eq!(
        (s, &v["name"], &v["hosts"], &v["memory_mib_limit"]),
        (201, &json!("east"), &json!(0), &json!(0)),
        "{v}"
    );
    assert_error(k.post("/v1/zones", json!({"name": "east"})), 409, "ObjectAlreadyExists");
    assert_error(k.post("/v1/zones", json!({"name": "East_1"})), 400, "InvalidValue");
    let (s, v) = k.get("/v1/zones");
    assert_eq!((s, names(&v)), (200, vec!["default".to_string(), "east".to_string()]), "{v}");
    assert_error(k.get("/v1/zones/north"), 404, "NotFound");

    // Join tokens: shown once, for an existing zone, with a bounded lifetime.
    let before = chrono::Utc::now();
    let (s, t) = k.post("/v1/join-tokens", json!({"zone": "east"}));
    assert_eq!((s, &t["zone"]), (201, &json!("east")), "{t}");
    assert!(t["token"].as_str().is_some_and(|x| x.starts_with("kumo_join_") && x.len() > 60), "{t}");
    let expires: chrono::DateTime<chrono::Utc> = serde_json::from_value(t["time_expires"].clone()).expect("time");
    let secs = (expires - before).num_seconds();
    assert!((3590..=3610).contains(&secs), "default lifetime is an hour: {secs} s");
    let (s, t2) = k.post("/v1/join-tokens", json!({"zone": "east", "expires_in_seconds": 604800}));
    assert_eq!(s, 201, "{t2}");
    assert_ne!(t["token"], t2["token"]);
    let msg = assert_error(k.post("/v1/join-tokens", json!({"zone": "north"})), 400, "InvalidValue");
    assert!(msg.contains("zone 'north' does not exist"), "{msg}");
    for bad in [0, 59, 604801] {
        let msg = assert_error(
            k.post("/v1/join-tokens", json!({"zone": "east", "expires_in_seconds": bad})),
            400,
            "InvalidValue",
        );
        assert!(msg.contains("expires_in_seconds"), "{msg}");
    }
    let mut stored = -1;
    common::with_store(&k, async |tx| {
        stored = sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM join_tokens")
            .fetch_one(&mut *tx)
            .await
            .expect("count join tokens");
    });
    assert_eq!(stored, 2, "refused join tokens are not stored");

    // Cordoned: the host list says so, and a create fails naming the cordoned host.
    let (s, v) = k.post_empty(&format!("/v1/hosts/{name}/cordon"));
    assert_eq!((s, &v["state"], &v["cordoned"]), (200, &json!("cordoned"), &json!(true)), "{v}");
    assert_eq!(host(&k)["state"], "cordoned");
    let msg = assert_error(create_instance(&k, "web", "vm1", "k1-nano"), 507, "InsufficientCapacity");
    assert!(msg.contains("1 cordoned") && msg.contains(&name), "{msg}");
    assert!(instance_names(&k, "web").is_empty());
    assert_eq!(used(&k), (0, 0, 0, 0));
    let (s, v) = k.get("/v1/system/audit-log?operation=host_cordon&limit=10");
    assert!(s == 200 && v["items"].as_array().is_some_and(|a| a.len() == 1), "the cordon is audited: {v}");

    // The CLI shows it.
    let table = kumo_cli(&k, &["host", "list"]);
    let row: Vec<&str> = table.lines().nth(1).expect("a host row").split_whitespace().collect();
    assert_eq!(&row[..3], [name.as_str(), "default", "cordoned"], "{table}");
    let zones = kumo_cli(&k, &["zone", "list"]);
    assert!(zones.lines().any(|l| l.starts_with("default ") && l.contains(" 1 ")), "{zones}");
    assert!(zones.lines().any(|l| l.starts_with("east ") && l.contains("the east room")), "{zones}");
    let out = kumo_cli(&k, &["--output", "json", "host", "join-token", "create", "--zone", "east", "--expires", "10m"]);
    let v: Value = serde_json::from_str(&out).expect("json");
    assert!(v["token"].as_str().is_some_and(|t| t.starts_with("kumo_join_")) && v["zone"] == "east", "{v}");

    // Uncordoned: creates work again; a zone must exist and have room.
    let v: Value = serde_json::from_str(&kumo_cli(&k, &["--output", "json", "host", "uncordon", &name])).expect("json");
    assert_eq!((&v["state"], &v["cordoned"]), (&json!("ready"), &json!(false)), "{v}");
    assert_eq!(host(&k)["state"], "ready");
    let with_zone =
        |zone: &str| json!({"name": format!("in-{zone}"), "image": IMAGE, "instance_type": "k1-nano", "zone": zone});
    let msg = assert_error(k.post("/v1/instances?project=web", with_zone("north")), 400, "InvalidValue");
    assert!(msg.contains("zone 'north' does not exist"), "{msg}");
    let msg = assert_error(k.post("/v1/instances?project=web", with_zone("east")), 507, "InsufficientCapacity");
    assert!(msg.contains("zone 'east' has no hosts"), "{msg}");
    assert!(instance_names(&k, "web").is_empty());
    let (s, v) = k.post("/v1/instances?project=web", with_zone("default"));
    assert_eq!(s, 202, "{v}");
    running_instance(&k, "web", "vm1", "k1-nano");
    assert_eq!(used(&k), (2, 256, 2, 0));
}

#[test]
fn host_labels_decide_where_an_instance_type_may_run() {
    let k = roomy();
    k.create_project("web");
    let name = host(&k)["name"].as_str().expect("host name").to_string();
    // An instance type that needs a label its host does not have: refused, saying why.
    let out = kumo_cli(
        &k,
        &[
            "--output",
            "json",
            "instance-type",
            "create",
            "ssd1",
            "--vcpus",
            "1",
            "--memory-mib",
            "128",
            "--disk-gib",
            "1",
            "--host-label",
            "disk=ssd",
        ],
    );
    let t: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(t["host_labels"], json!({"disk": "ssd"}), "{t}");
    let msg = assert_error(create_instance(&k, "web", "fast", "ssd1"), 507, "InsufficientCapacity");
    assert!(msg.contains(&format!("1 without the label disk=ssd ({name})")), "{msg}");
    assert!(instance_names(&k, "web").is_empty());
    // Bad labels → 400, nothing changed.
    for bad in [json!({"Disk": "ssd"}), json!({"disk": "s s d"}), json!({"": "x"})] {
        assert_error(k.send_put(&format!("/v1/hosts/{name}/labels"), json!({"labels": bad})), 400, "InvalidValue");
    }
    assert_error(k.send_put("/v1/hosts/nowhere/labels", json!({"labels": {}})), 404, "NotFound");
    let bad_type = json!({"name": "bad", "vcpus": 1, "memory_mib": 128, "disk_gib": 1, "host_labels": {"a b": "c"}});
    assert_error(k.post("/v1/instance-types", bad_type), 400, "InvalidValue");
    assert_eq!(host(&k)["labels"], json!({}));
    // Labelled (through the CLI: set two, remove one), the host takes it.
    kumo_cli(&k, &["host", "label", &name, "disk=ssd", "rack=r1"]);
    let view = kumo_cli(&k, &["host", "label", &name, "rack-"]);
    assert!(view.lines().any(|l| l.starts_with("LABELS") && l.ends_with("disk=ssd")), "{view}");
    assert_eq!(host(&k)["labels"], json!({"disk": "ssd"}));
    running_instance(&k, "web", "fast", "ssd1");
    // The all-in-one's own host cannot be removed; an unknown one is 404.
    let msg = assert_error(k.delete(&format!("/v1/hosts/{name}")), 409, "InvalidState");
    assert!(msg.contains("own host"), "{msg}");
    assert_error(k.delete("/v1/hosts/nowhere"), 404, "NotFound");
    assert_eq!(host(&k)["name"], name.as_str());
    let (s, v) = k.get("/v1/system/audit-log?operation=host_labels_set&limit=10");
    assert!(
        s == 200 && v["items"].as_array().is_some_and(|a| a.len() == 6),
        "label changes are audited, refused ones too: {v}"
    );
}

#[test]
fn placement_groups_anti_affinity_affinity_and_delete() {
    let k = roomy();
    k.create_project("web");
    let host_name = host(&k)["name"].as_str().expect("host name").to_string();
    let group =
        |name: &str, policy: &str| k.post("/v1/placement-groups?project=web", json!({"name": name, "policy": policy}));
    let in_group = |name: &str, g: &str| {
        k.post(
            "/v1/instances?project=web",
            json!({"name": name, "image": IMAGE, "instance_type": "k1-nano", "placement_group": g}),
        )
    };

    // Created through the CLI and the API; bad input refused with nothing made.
    let out = kumo_cli(
        &k,
        &["--output", "json", "placement-group", "create", "front", "--project", "web", "--policy", "anti-affinity"],
    );
    let v: Value = serde_json::from_str(&out).expect("json");
    assert_eq!((&v["name"], &v["policy"], &v["instances"]), (&json!("front"), &json!("anti-affinity"), &json!(0)));
    let (s, v) = group("db", "affinity");
    assert_eq!((s, &v["policy"], &v["project"]), (201, &json!("affinity"), &json!("web")), "{v}");
    assert_error(group("db", "pack"), 409, "ObjectAlreadyExists");
    assert_error(group("other", "sideways"), 400, "InvalidValue");
    let (s, v) = k.get("/v1/placement-groups?project=web");
    assert_eq!((s, names(&v)), (200, vec!["db".to_string(), "front".to_string()]), "{v}");

    // Unknown group: 400, nothing made, nothing reserved.
    let msg = assert_error(in_group("x", "nope"), 400, "InvalidValue");
    assert!(msg.contains("placement group 'nope' does not exist"), "{msg}");
    assert!(instance_names(&k, "web").is_empty());
    assert_eq!(used(&k), (0, 0, 0, 0));

    // Anti-affinity on one host: the first is placed, the second refused saying why.
    let (s, v) = in_group("f1", "front");
    assert_eq!((s, &v["placement_group"]), (202, &json!("front")), "{v}");
    k.wait_state("web", "f1", "running", WAIT);
    let msg = assert_error(in_group("f2", "front"), 507, "InsufficientCapacity");
    assert_eq!(
        msg,
        format!(
            "placement group 'front' (anti-affinity): every ready host already runs one of its 1 instance (1 ready host: {host_name})"
        )
    );
    assert_eq!(instance_names(&k, "web"), ["f1"]);
    assert_eq!(used(&k), (1, 128, 1, 0));

    // Affinity: both on the one host (the operator sees it).
    for name in ["d1", "d2"] {
        let (s, v) = in_group(name, "db");
        assert_eq!(s, 202, "{v}");
        let v = k.wait_state("web", name, "running", WAIT);
        assert_eq!((&v["host"], &v["placement_group"]), (&json!(host_name), &json!("db")), "{v}");
    }
    let (s, v) = k.get("/v1/placement-groups/db?project=web");
    assert_eq!((s, &v["instances"]), (200, &json!(2)), "{v}");
    let table = kumo_cli(&k, &["placement-group", "list", "--project", "web"]);
    assert!(table.lines().any(|l| l.split_whitespace().collect::<Vec<_>>() == ["db", "affinity", "2", "-"]), "{table}");

    // Not deleted while it has instances (named); deleted once they are gone.
    let msg = assert_error(k.delete("/v1/placement-groups/db?project=web"), 409, "InvalidState");
    assert!(msg.contains("still has 2 instances (d1, d2)"), "{msg}");
    delete_instance(&k, "web", "d1");
    delete_instance(&k, "web", "d2");
    let (s, v) = k.delete("/v1/placement-groups/db?project=web");
    assert_eq!(s, 204, "{v}");
    assert_error(k.get("/v1/placement-groups/db?project=web"), 404, "NotFound");
    // The anti-affinity group's host is free again once f1 is gone.
    delete_instance(&k, "web", "f1");
    let (s, v) = in_group("f2", "front");
    assert_eq!(s, 202, "{v}");

    // Audited like the other mutations.
    let (s, v) = k.get("/v1/system/audit-log?operation=placement_group_delete&limit=10");
    assert!(s == 200 && v["items"].as_array().is_some_and(|a| a.len() == 2), "the deletes are audited: {v}");
}

// ---------------------------------------------------------------------------------------------
// S3 access keys

const PASSWORD: &str = "correct horse battery";

/// Makes a user and logs them in; returns their session token.
fn user_session(k: &Kumod, name: &str) -> String {
    let (s, v) = k.post("/v1/users", json!({"name": name, "password": PASSWORD}));
    assert_eq!(s, 201, "{v}");
    let (s, _, v) = send(raw(k, Method::POST, "/v1/login").json(&json!({"username": name, "password": PASSWORD})));
    assert_eq!(s, 200, "login as {name}: {v}");
    v["token"].as_str().expect("token").to_string()
}

fn add_member(k: &Kumod, project: &str, user: &str, role: &str) {
    let (s, v) = k.post(&format!("/v1/projects/{project}/members"), json!({"user": user, "role": role}));
    assert_eq!(s, 201, "{v}");
}

/// A request with `token`; returns status and body.
fn as_user(k: &Kumod, token: &str, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
    let req = raw(k, method, path).bearer_auth(token);
    let req = match body {
        Some(b) => req.json(&b),
        None => req,
    };
    let (s, _, v) = send(req);
    (s, v)
}

/// Names of a project's access keys, as `token` lists them.
fn access_key_names(k: &Kumod, token: &str, project: &str) -> Vec<String> {
    let (s, v) = as_user(k, token, Method::GET, &format!("/v1/access-keys?project={project}"), None);
    assert_eq!(s, 200, "{v}");
    names(&v)
}

/// Every key of a JSON value, at any depth.
fn json_keys(v: &Value, out: &mut BTreeSet<String>) {
    match v {
        Value::Object(m) => {
            for (key, val) in m {
                out.insert(key.clone());
                json_keys(val, out);
            }
        }
        Value::Array(a) => a.iter().for_each(|x| json_keys(x, out)),
        _ => {}
    }
}

#[test]
fn access_key_secret_is_shown_once_and_never_stored_in_clear() {
    let mut k = cloud(&[]);
    k.create_project("web");
    k.create_project("shop");
    let alice = user_session(&k, "alice");
    add_member(&k, "web", "alice", "owner");
    add_member(&k, "shop", "alice", "owner");

    // Created: 201 with the id (KUMO…, 20) and the secret (40), both of safe characters.
    let (s, c) = as_user(
        &k,
        &alice,
        Method::POST,
        "/v1/access-keys?project=web",
        Some(json!({"name": "backup", "description": "nightly"})),
    );
    assert_eq!(s, 201, "{c}");
    let key_id = c["access_key_id"].as_str().expect("access_key_id").to_string();
    let secret = c["secret_access_key"].as_str().expect("secret_access_key").to_string();
    assert!(key_id.len() == 20 && key_id.starts_with("KUMO"), "{key_id}");
    assert!(key_id.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit()), "{key_id}");
    assert_eq!(secret.len(), 40, "{secret}");
    assert!(secret.bytes().all(|b| b.is_ascii_alphanumeric()), "{secret}");
    assert_eq!(
        (&c["name"], &c["description"], &c["project"], &c["user"], &c["last_used"]),
        (&json!("backup"), &json!("nightly"), &json!("web"), &json!("alice"), &Value::Null),
        "{c}"
    );
    let id = c["id"].as_str().expect("id").to_string();

    // List and view (by name and by id) never show it, under any field.
    let (s, list) = as_user(&k, &alice, Method::GET, "/v1/access-keys?project=web", None);
    assert_eq!((s, names(&list)), (200, vec!["backup".to_string()]), "{list}");
    assert_eq!(list["items"][0]["access_key_id"], json!(key_id), "{list}");
    for path in ["/v1/access-keys/backup?project=web".to_string(), format!("/v1/access-keys/{id}?project=web")] {
        let (s, v) = as_user(&k, &alice, Method::GET, &path, None);
        assert_eq!((s, &v["access_key_id"], &v["user"]), (200, &json!(key_id), &json!("alice")), "{path}: {v}");
    }
    let (_, view) = as_user(&k, &alice, Method::GET, "/v1/access-keys/backup?project=web", None);
    for (what, v) in [("list", &list), ("view", &view), ("operator's list", &k.get("/v1/access-keys?project=web").1)] {
        assert!(!v.to_string().contains(&secret), "{what} shows the secret: {v}");
        let mut keys = BTreeSet::new();
        json_keys(v, &mut keys);
        assert!(!keys.iter().any(|f| f.contains("secret")), "{what} has a secret field: {keys:?}");
    }

    // A second key of the same name: 409; a bad name or description: 400; nothing is made.
    let create = |body: Value| as_user(&k, &alice, Method::POST, "/v1/access-keys?project=web", Some(body));
    let msg = assert_error(create(json!({"name": "backup"})), 409, "ObjectAlreadyExists");
    assert!(msg.contains("backup"), "{msg}");
    for bad in ["Backup_1", "", "-x", "a b"] {
        assert_error(create(json!({"name": bad})), 400, "InvalidValue");
    }
    let msg = assert_error(create(json!({"name": "long", "description": "d".repeat(513)})), 400, "InvalidValue");
    assert!(msg.contains("description"), "{msg}");
    assert_error(create(json!({"name": "extra", "secret_access_key": secret})), 400, "InvalidValue");
    assert_eq!(access_key_names(&k, &alice, "web"), ["backup"], "refused creates made nothing");

    // The operator token belongs to no user: it may not make a key (and makes none).
    let msg = assert_error(k.post("/v1/access-keys?project=web", json!({"name": "ops"})), 400, "InvalidValue");
    assert!(msg.contains("operator token"), "{msg}");
    assert_eq!(access_key_names(&k, &k.token, "web"), ["backup"]);

    // The same name may be used in another project; a key is not found through another project.
    let (s, other) = as_user(&k, &alice, Method::POST, "/v1/access-keys?project=shop", Some(json!({"name": "backup"})));
    assert_eq!((s, &other["project"]), (201, &json!("shop")), "{other}");
    assert_ne!(other["access_key_id"], json!(key_id));
    assert_error(
        as_user(&k, &alice, Method::GET, &format!("/v1/access-keys/{id}?project=shop"), None),
        404,
        "NotFound",
    );
    assert_error(
        as_user(&k, &alice, Method::DELETE, &format!("/v1/access-keys/{id}?project=shop"), None),
        404,
        "NotFound",
    );
    assert_error(as_user(&k, &alice, Method::GET, "/v1/access-keys/nope?project=web", None), 404, "NotFound");
    let (s, v) = as_user(&k, &alice, Method::GET, &format!("/v1/access-keys/{id}?project=web"), None);
    assert_eq!((s, &v["name"]), (200, &json!("backup")), "a refused delete deleted nothing: {v}");

    // Deleted: gone from the list and the view; the name may be used again, for a new key.
    let (s, v) = as_user(&k, &alice, Method::DELETE, "/v1/access-keys/backup?project=web", None);
    assert_eq!(s, 204, "{v}");
    assert!(access_key_names(&k, &alice, "web").is_empty());
    assert_error(as_user(&k, &alice, Method::GET, "/v1/access-keys/backup?project=web", None), 404, "NotFound");
    assert_error(as_user(&k, &alice, Method::DELETE, "/v1/access-keys/backup?project=web", None), 404, "NotFound");
    assert_eq!(access_key_names(&k, &alice, "shop"), ["backup"], "the other project's key stays");
    let (s, again) = as_user(&k, &alice, Method::POST, "/v1/access-keys?project=web", Some(json!({"name": "backup"})));
    assert_eq!(s, 201, "{again}");
    assert!(again["access_key_id"] != json!(key_id) && again["secret_access_key"] != json!(secret), "{again}");

    // Audited and in the project's events.
    let (s, v) = k.get("/v1/system/audit-log?operation=access_key_create&limit=100");
    assert_eq!(s, 200, "{v}");
    let audited: Vec<(u64, &str)> = v["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|e| (e["status"].as_u64().unwrap_or(0), e["actor"].as_str().unwrap_or("")))
        .collect();
    assert_eq!(audited.iter().filter(|(s, _)| *s == 201).count(), 3, "{audited:?}");
    assert!(audited.iter().filter(|(s, _)| *s == 201).all(|(_, a)| a.contains("alice")), "{audited:?}");
    assert!(audited.iter().any(|(s, _)| *s == 409), "refused creates are audited too: {audited:?}");
    let evs: Vec<String> = events(&k, "web", None)
        .iter()
        .filter(|e| e["resource_type"] == "access_key")
        .map(|e| e["kind"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(evs, ["created", "deleted", "created"]);

    // The store holds the secrets sealed (nonce, ciphertext, tag), never in clear.
    let live_secret = again["secret_access_key"].as_str().expect("secret").to_string();
    k.kill9();
    let mut rows: Vec<(String, String)> = Vec::new();
    common::with_store(&k, async |tx| {
        rows = sqlx::query_as("SELECT access_key_id, secret_sealed FROM access_keys")
            .fetch_all(&mut *tx)
            .await
            .expect("read access keys");
    });
    assert_eq!(rows.len(), 3, "{rows:?}");
    for (kid, sealed) in &rows {
        assert_eq!(sealed.len(), 2 * (12 + 40 + 16), "{kid}: {sealed}");
        for clear in [&secret, &live_secret] {
            assert!(!sealed.contains(clear.as_str()), "{kid}: a secret is stored in clear");
            assert!(!sealed.contains(&hex_of(clear)), "{kid}: a secret is stored in hex");
        }
    }
}

fn hex_of(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn access_keys_are_made_by_any_member_and_deleted_by_their_user_or_an_owner() {
    let k = cloud(&[]);
    k.create_project("web");
    let [alice, bob, carol, dave] = ["alice", "bob", "carol", "dave"].map(|u| user_session(&k, u));
    add_member(&k, "web", "alice", "owner");
    add_member(&k, "web", "bob", "viewer");
    add_member(&k, "web", "carol", "collaborator");
    let create = |token: &str, name: &str| {
        as_user(&k, token, Method::POST, "/v1/access-keys?project=web", Some(json!({"name": name})))
    };
    let delete = |token: &str, name: &str| {
        as_user(&k, token, Method::DELETE, &format!("/v1/access-keys/{name}?project=web"), None)
    };

    // A viewer, a collaborator and an owner each make one, for themselves.
    for (token, name, user) in
        [(&bob, "bob-key", "bob"), (&carol, "carol-key", "carol"), (&alice, "alice-key", "alice")]
    {
        let (s, v) = create(token, name);
        assert_eq!((s, &v["user"]), (201, &json!(user)), "{name}: {v}");
    }
    // Every member sees every key of the project (never a secret); a non-member sees nothing.
    for token in [&alice, &bob, &carol] {
        assert_eq!(access_key_names(&k, token, "web"), ["alice-key", "bob-key", "carol-key"]);
    }
    assert_error(as_user(&k, &dave, Method::GET, "/v1/access-keys?project=web", None), 404, "NotFound");
    assert_error(create(&dave, "dave-key"), 404, "NotFound");
    assert_error(delete(&dave, "bob-key"), 404, "NotFound");

    // Someone else's key: a collaborator or a viewer may not delete it (403, naming its user).
    let msg = assert_error(delete(&carol, "bob-key"), 403, "Forbidden");
    assert!(msg.contains("'bob'"), "{msg}");
    assert_error(delete(&bob, "alice-key"), 403, "Forbidden");
    assert_error(delete(&carol, "alice-key"), 403, "Forbidden");
    assert_eq!(access_key_names(&k, &alice, "web"), ["alice-key", "bob-key", "carol-key"]);

    // Their own: anyone, a viewer too. Anyone's: an owner of the project, and the operator.
    let (s, v) = delete(&carol, "carol-key");
    assert_eq!(s, 204, "{v}");
    let (s, v) = delete(&alice, "bob-key");
    assert_eq!(s, 204, "the owner deletes the viewer's key: {v}");
    assert_eq!(access_key_names(&k, &bob, "web"), ["alice-key"]);
    let (s, v) = create(&bob, "bob-key2");
    assert_eq!(s, 201, "{v}");
    let (s, v) = delete(&bob, "bob-key2");
    assert_eq!(s, 204, "a viewer deletes their own key: {v}");
    let (s, v) = k.delete("/v1/access-keys/alice-key?project=web");
    assert_eq!(s, 204, "an operator deletes any key: {v}");
    assert!(access_key_names(&k, &alice, "web").is_empty());
}

#[test]
fn access_keys_through_the_cli() {
    let k = cloud(&[]);
    k.create_project("web");
    let alice = user_session(&k, "alice");
    add_member(&k, "web", "alice", "collaborator");

    // -o json: the API's answer, with the id and the secret.
    let out = kumo_cli_as(&k, &alice, &["-o", "json", "access-key", "create", "backup", "--project", "web"]);
    let c: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    let key_id = c["access_key_id"].as_str().expect("access_key_id").to_string();
    let secret = c["secret_access_key"].as_str().expect("secret_access_key").to_string();
    assert!(key_id.starts_with("KUMO") && key_id.len() == 20 && secret.len() == 40, "{c}");
    assert_eq!((&c["name"], &c["user"], &c["project"]), (&json!("backup"), &json!("alice"), &json!("web")), "{c}");

    // The table: the id and the secret, and that it is shown only once.
    let table =
        kumo_cli_as(&k, &alice, &["access-key", "create", "ci", "--description", "the CI's key", "--project", "web"]);
    let row = |field: &str| {
        table
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .map(str::trim)
            .unwrap_or_else(|| panic!("no {field}: {table}"))
    };
    let ci_secret = row("SECRET ACCESS KEY").to_string();
    assert!(row("ACCESS KEY ID").starts_with("KUMO") && ci_secret.len() == 40, "{table}");
    assert!(table.contains("shown only once"), "{table}");

    // The list: names, ids and users, never the secrets.
    let list = kumo_cli_as(&k, &alice, &["access-key", "list", "--project", "web"]);
    let rows: Vec<Vec<&str>> = list.lines().skip(1).map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(rows.len(), 2, "{list}");
    assert_eq!(&rows[0][..4], ["backup", key_id.as_str(), "alice", "never"], "{list}");
    assert_eq!(rows[1][0], "ci", "{list}");
    assert!(!list.contains(&secret) && !list.contains(&ci_secret), "{list}");
    let json_list = kumo_cli_as(&k, &alice, &["-o", "json", "access-key", "list", "--project", "web"]);
    assert!(!json_list.contains(&secret) && !json_list.contains("secret_access_key"), "{json_list}");

    // Delete: gone from the list; the operator's token may not make a key (the CLI says why).
    kumo_cli_as(&k, &alice, &["access-key", "delete", "backup", "--project", "web"]);
    let list = kumo_cli_as(&k, &alice, &["access-key", "list", "--project", "web"]);
    assert_eq!(list.lines().skip(1).map(|l| l.split_whitespace().next().unwrap_or("")).collect::<Vec<_>>(), ["ci"]);
    let out = kumo_cli_output(&k, &k.token, &["access-key", "create", "ops", "--project", "web"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("InvalidValue"), "{stderr}");
    assert_eq!(access_key_names(&k, &alice, "web"), ["ci"]);
}
