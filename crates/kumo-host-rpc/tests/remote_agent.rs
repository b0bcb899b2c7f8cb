//! The host agent's API end to end: a `LocalAgent` on the sim driver served over TLS on
//! 127.0.0.1 with a fresh self-signed certificate, called through `RemoteAgent`.

use async_trait::async_trait;
use kumo_agent::compute::sim::SimDriver;
use kumo_agent::storage::quarantine::Quarantine;
use kumo_agent::LocalAgent;
use kumo_host_api::wire::{Call, Reply, Transport};
use kumo_host_api::{BootSpec, GuestStatus, HostAgent, HostError, InstanceId, InstanceSpec};
use kumo_host_rpc::client::RemoteAgent;
use kumo_host_rpc::server::{new_secret, router, serve_tls};
use kumo_host_rpc::tls::{self, SelfSigned};
use std::sync::Arc;
use std::time::Duration;

/// An agent served on a port of its own, and what a client needs to reach it.
struct Served {
    base: String,
    cert: SelfSigned,
    secret: String,
    _dir: tempfile::TempDir,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl Served {
    fn client(&self) -> RemoteAgent {
        RemoteAgent::new(&self.base, &self.cert.fingerprint, &self.secret).expect("client")
    }

    /// A plain reqwest client that trusts the agent's certificate (to send what RemoteAgent never would).
    fn raw(&self) -> reqwest::Client {
        let tls = tls::pinned_client_config(&self.cert.fingerprint, None).expect("tls");
        reqwest::Client::builder().use_preconfigured_tls(tls).build().expect("reqwest")
    }
}

async fn serve(agent: Option<Arc<dyn HostAgent>>) -> Served {
    let dir = tempfile::tempdir().expect("tempdir");
    let agent = agent.unwrap_or_else(|| {
        let driver = Arc::new(SimDriver::new("h".into(), [4, 4096, 100, 0], Duration::ZERO));
        let quarantine = Arc::new(Quarantine::new(dir.path().join("quarantine")));
        Arc::new(LocalAgent::new(driver, dir.path(), quarantine))
    });
    let cert = tls::self_signed(&["127.0.0.1".into()]).expect("cert");
    let secret = new_secret();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("https://{}", listener.local_addr().expect("addr"));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let app = router(agent, secret.clone());
    let config = tls::server_config(&cert).expect("server config");
    tokio::spawn(async move {
        serve_tls(listener, app, config, async move {
            let _ = stopped.await;
        })
        .await
        .expect("serve")
    });
    Served { base, cert, secret, _dir: dir, _stop: stop }
}

fn spec() -> InstanceSpec {
    InstanceSpec {
        id: uuid::Uuid::new_v4(),
        name: "web-1".into(),
        vcpus: 1,
        memory_mib: 256,
        disk_gib: 1,
        image_disk: "/nonexistent/disk.qcow2".into(),
        boot: BootSpec::Disk,
        user_data: Some("#cloud-config\n".into()),
        ssh_keys: vec![],
        volumes: vec![],
        nics: vec![],
    }
}

fn unreachable(err: HostError) -> String {
    match err {
        HostError::Unreachable(m) => m,
        other => panic!("not a transport error: {other:?}"),
    }
}

#[tokio::test]
async fn an_instance_lives_its_life_through_the_remote_agent() {
    let served = serve(None).await;
    let agent = served.client();
    agent.health().await.expect("health");
    let info = agent.host_info().await.expect("host_info");
    assert_eq!((info.name.as_str(), info.driver.as_str(), info.vcpus), ("h", "sim", 4));

    let spec = spec();
    let id = InstanceId::from(spec.id);
    assert_eq!(agent.status(id).await, Ok(GuestStatus::Absent));
    agent.provision(spec.clone()).await.expect("provision");
    agent.start(spec.clone()).await.expect("start");
    assert_eq!(agent.status(id).await, Ok(GuestStatus::Running));
    assert_eq!(agent.list_instances().await, Ok(vec![id]));
    let serial = agent.serial(id, 0, 4096).await.expect("serial");
    assert!(String::from_utf8_lossy(&serial.bytes).contains("simulated guest 'web-1'"), "{serial:?}");
    agent.stop(id, Duration::from_secs(1)).await.expect("stop");
    assert_eq!(agent.status(id).await, Ok(GuestStatus::Provisioned));
    // The host's own error keeps its kind: rebooting a guest that does not run.
    let err = agent.reboot(id).await.expect_err("reboot of a stopped guest");
    assert!(matches!(&err, HostError::Failed(m) if m.contains("not running")), "{err:?}");
    agent.destroy(id).await.expect("destroy");
    assert_eq!(agent.status(id).await, Ok(GuestStatus::Absent));
}

/// A root disk moves between two agents as raw bytes through the controller's side: staged on
/// one, copied in chunks, checked and installed on the other; a copy that does not match is refused
/// and removed; a host's error of a transfer keeps its kind.
#[tokio::test]
async fn a_root_disk_moves_between_two_agents_and_is_checked() {
    let (from, to) = (serve(None).await, serve(None).await);
    let (source, target) = (from.client(), to.client());
    let spec = spec();
    let id = InstanceId::from(spec.id);
    let err = source.read_export(id, 0, 1024).await.expect_err("nothing staged");
    assert!(matches!(err, HostError::NotFound(_)), "{err:?}");
    source.start(spec.clone()).await.expect("start");
    let err = source.export_disk(id).await.expect_err("a running guest");
    assert!(matches!(&err, HostError::Failed(m) if m.contains("stop it first")), "{err:?}");
    source.stop(id, Duration::from_secs(1)).await.expect("stop");
    let staged = source.export_disk(id).await.expect("export");
    assert_eq!((staged.size_bytes, staged.sha256.len()), (256 << 10, 64));
    // In small chunks, through this test (as the controller does).
    let mut offset = 0;
    loop {
        let chunk = source.read_export(id, offset, 100_000).await.expect("read");
        if chunk.is_empty() {
            break;
        }
        target.write_import(id, offset, chunk.clone()).await.expect("write");
        offset += chunk.len() as u64;
    }
    assert_eq!(offset, staged.size_bytes);
    let mut wrong = staged.clone();
    wrong.sha256 = "0".repeat(64);
    let err = target.finish_import(id, wrong).await.expect_err("a copy that does not match");
    assert!(matches!(&err, HostError::Failed(m) if m.contains("does not match")), "{err:?}");
    assert_eq!(target.status(id).await, Ok(GuestStatus::Absent), "nothing installed");
    let err = target.write_import(id, 4096, vec![1]).await.expect_err("a hole");
    assert!(matches!(&err, HostError::Failed(m) if m.contains("in order")), "{err:?}");
    // Again, whole: installed, and installing again is a no-op.
    let all = source.read_export(id, 0, u64::MAX).await.expect("read");
    target.write_import(id, 0, all).await.expect("write");
    target.finish_import(id, staged.clone()).await.expect("finish");
    target.finish_import(id, staged.clone()).await.expect("finish again");
    assert_eq!(target.status(id).await, Ok(GuestStatus::Provisioned));
    target.start(spec).await.expect("start on the target");
    let serial = target.serial(id, 0, 4096).await.expect("serial");
    assert!(String::from_utf8_lossy(&serial.bytes).contains("copied in from another host"), "{serial:?}");
    source.discard_move(id).await.expect("discard");
    assert!(matches!(source.read_export(id, 0, 1).await, Err(HostError::NotFound(_))));
}

/// An agent that answers every call with the same reply (an agent by way of `Transport`).
struct Answers(Reply<serde_json::Value>);

#[async_trait]
impl Transport for Answers {
    async fn send(&self, _call: &Call) -> Result<Vec<u8>, HostError> {
        Ok(serde_json::to_vec(&self.0).expect("encode"))
    }
}

#[tokio::test]
async fn not_found_keeps_its_kind_and_message() {
    let missing = HostError::NotFound("volume v is not on this host".into());
    let served = serve(Some(Arc::new(Answers(Reply::Err(missing.clone()))))).await;
    assert_eq!(served.client().delete_volume(uuid::Uuid::new_v4().into()).await, Err(missing));
}

#[tokio::test]
async fn a_wrong_secret_is_refused_and_nothing_is_done() {
    let served = serve(None).await;
    let wrong = RemoteAgent::new(&served.base, &served.cert.fingerprint, "not-the-secret").expect("client");
    let spec = spec();
    let m = unreachable(wrong.provision(spec.clone()).await.expect_err("refused"));
    assert!(m.contains("refused our secret") && m.contains("401"), "{m}");
    assert!(wrong.health().await.is_err());
    assert_eq!(served.client().status(spec.id.into()).await, Ok(GuestStatus::Absent));

    // No secret at all, and a body that is not even a call: 401 before anything is read.
    let resp = served.raw().post(format!("{}/agent/v1/call", served.base)).body("{").send().await.expect("send");
    assert_eq!(resp.status(), 401);
    let body: serde_json::Value = resp.json().await.expect("json");
    assert!(body["error"].as_str().expect("error").contains("no bearer secret"), "{body}");
}

#[tokio::test]
async fn a_certificate_that_is_not_the_pinned_one_is_refused() {
    let served = serve(None).await;
    let other = tls::self_signed(&["127.0.0.1".into()]).expect("cert");
    let agent = RemoteAgent::new(&served.base, &other.fingerprint, &served.secret).expect("client");
    let m = unreachable(agent.host_info().await.expect_err("refused"));
    assert!(m.contains("TLS with the host agent") && m.contains("not the pinned"), "{m}");
    assert!(m.contains(&other.fingerprint) && m.contains(&served.cert.fingerprint), "{m}");
}

#[tokio::test]
async fn a_malformed_call_is_400_and_nothing_is_called() {
    let served = serve(None).await;
    let url = format!("{}/agent/v1/call", served.base);
    let post = |body: &'static str| served.raw().post(&url).bearer_auth(&served.secret).body(body).send();
    for (body, says) in [
        ("not json", "expected ident"),
        (r#"{"call":"format_host","args":{}}"#, "unknown variant `format_host`"),
        (r#"{"call":"reboot","args":{"id":"nope"}}"#, "UUID"),
    ] {
        let resp = post(body).await.expect("send");
        assert_eq!(resp.status(), 400, "{body}");
        let answer: serde_json::Value = resp.json().await.expect("json");
        let error = answer["error"].as_str().expect("error");
        assert!(error.contains("not a call of the host agent API") && error.contains(says), "{body}: {error}");
    }
    // Well-formed, by hand: the answer is the wire's reply.
    let resp = post(r#"{"call":"list_instances","args":{}}"#).await.expect("send");
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.json::<serde_json::Value>().await.expect("json"), serde_json::json!({"ok": []}));
}

#[tokio::test]
async fn an_agent_that_is_not_there_is_unreachable() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    let fingerprint = tls::self_signed(&["127.0.0.1".into()]).expect("cert").fingerprint;
    let agent = RemoteAgent::new(&format!("https://{addr}"), &fingerprint, "s").expect("client");
    let m = unreachable(agent.host_info().await.expect_err("down"));
    assert!(m.starts_with("host_info: cannot connect to the host agent at https://127.0.0.1:"), "{m}");
}

#[test]
fn addresses_and_fingerprints_are_checked_up_front() {
    let fp = vec!["AB"; 32].join(":");
    assert!(RemoteAgent::new("http://10.0.0.1:7401", &fp, "s").is_err());
    assert!(RemoteAgent::new("https://10.0.0.1:7401/x", &fp, "s").is_err());
    assert!(RemoteAgent::new("https://10.0.0.1:7401", "abcd", "s").is_err());
    assert!(RemoteAgent::new("https://10.0.0.1:7401", &fp, "").is_err());
    let agent = RemoteAgent::new("https://10.0.0.1:7401/", &fp, "s").expect("ok");
    assert_eq!(agent.base(), "https://10.0.0.1:7401");
}

/// Several hosts behind one listener (`router_by_secret`, as `kumo-bench cluster` serves its
/// simulated hosts): each secret reaches its own host's agent, any other is refused (401).
#[tokio::test]
async fn one_listener_serves_each_host_by_its_secret() {
    use kumo_host_rpc::server::router_by_secret;
    use std::collections::HashMap;
    let dir = tempfile::tempdir().expect("tempdir");
    let quarantine = Arc::new(Quarantine::new(dir.path().join("quarantine")));
    let mut agents: HashMap<String, Arc<dyn HostAgent>> = HashMap::new();
    let mut secrets = Vec::new();
    for name in ["h1", "h2"] {
        let driver = Arc::new(SimDriver::new(name.into(), [4, 4096, 100, 0], Duration::ZERO));
        let secret = new_secret();
        agents.insert(secret.clone(), Arc::new(LocalAgent::new(driver, &dir.path().join(name), quarantine.clone())));
        secrets.push(secret);
    }
    let app = router_by_secret(Arc::new(move |given: &str| agents.get(given).cloned()));
    let cert = tls::self_signed(&["127.0.0.1".into()]).expect("cert");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("https://{}", listener.local_addr().expect("addr"));
    let (_stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let config = tls::server_config(&cert).expect("server config");
    tokio::spawn(async move {
        serve_tls(listener, app, config, async move {
            let _ = stopped.await;
        })
        .await
        .expect("serve")
    });
    let h1 = RemoteAgent::new(&base, &cert.fingerprint, &secrets[0]).expect("client");
    let h2 = RemoteAgent::new(&base, &cert.fingerprint, &secrets[1]).expect("client");
    assert_eq!(h1.host_info().await.expect("h1").name, "h1");
    assert_eq!(h2.host_info().await.expect("h2").name, "h2");
    // A guest started through h1's secret is h1's alone.
    let spec = spec();
    h1.provision(spec.clone()).await.expect("provision");
    assert_eq!(h1.list_instances().await, Ok(vec![InstanceId::from(spec.id)]));
    assert_eq!(h2.list_instances().await, Ok(vec![]));
    let stranger = RemoteAgent::new(&base, &cert.fingerprint, &new_secret()).expect("client");
    let err = unreachable(stranger.host_info().await.expect_err("a secret no host has"));
    assert!(err.contains("refused our secret"), "{err}");
}
