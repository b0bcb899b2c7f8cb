//! [`JsonRoundTrip`]: a [`HostAgent`] adapter that sends every call through the wire format of
//! [`crate::wire`] in process: the [`Call`] to JSON text and back, then the agent's
//! [`Reply`](crate::wire::Reply) to JSON text and back. It changes nothing when the seam is sound;
//! a field that does not survive the trip breaks the tests that run on it (`kumod --agent-adapter
//! json`, `KUMO_TEST_AGENT=json`). The HTTPS transport (`kumo-host-rpc`, `--agent-adapter http`,
//! the second pass of scripts/test.sh) carries the same bytes over a socket, so it covers this too.
//!
//! Bulk data is not part of a call (backups and image files are artifacts named by id; see
//! [`crate::storage`]): moving them is the transport's job, so this adapter has none to pass.

use crate::wire::{dispatch, Call, Transport};
use crate::*;

/// Wraps `A`, round-tripping every call and its answer through JSON. A [`HostAgent`] as every
/// [`Transport`] is.
pub struct JsonRoundTrip<A>(pub A);

#[async_trait]
impl<A: HostAgent> Transport for JsonRoundTrip<A> {
    async fn send(&self, call: &Call) -> Result<Vec<u8>> {
        let name = call.name();
        let text = serde_json::to_vec(call).map_err(|e| HostError::Unreachable(format!("{name}: encoding: {e}")))?;
        let call: Call = serde_json::from_slice(&text)
            .map_err(|e| HostError::Unreachable(format!("{name}: decoding {}: {e}", String::from_utf8_lossy(&text))))?;
        let answer = dispatch(&self.0, call).await;
        serde_json::to_vec(&answer).map_err(|e| HostError::Unreachable(format!("{name}: encoding the answer: {e}")))
    }

    async fn read_chunk(&self, id: InstanceId, offset: u64, max: u64) -> Result<Vec<u8>> {
        self.0.read_export(id, offset, max).await
    }

    async fn write_chunk(&self, id: InstanceId, offset: u64, bytes: Vec<u8>) -> Result<()> {
        self.0.write_import(id, offset, bytes).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::{Metadata, NicNet, PeerNet, RuleNet, VpcNet};
    use crate::wire::Reply;
    use serde::de::DeserializeOwned;

    /// `v` as the other side of a JSON wire reads it.
    fn trip<T: Serialize + DeserializeOwned>(v: &T) -> T {
        serde_json::from_str(&serde_json::to_string(v).unwrap()).unwrap()
    }

    /// An agent that answers every call with the same reply (an agent by way of [`Transport`]).
    struct Answers(Reply<serde_json::Value>);

    #[async_trait]
    impl Transport for Answers {
        async fn send(&self, _call: &Call) -> Result<Vec<u8>> {
            Ok(serde_json::to_vec(&self.0).unwrap())
        }
    }

    #[test]
    fn a_desired_network_survives_the_wire() {
        let group = uuid::Uuid::new_v4();
        let mut want = DesiredNet {
            vpcs: vec![VpcNet { vni: 7, zone: 3, subnets: vec!["10.0.0.0/24".parse().unwrap()] }],
            nics: vec![NicNet {
                id: uuid::Uuid::new_v4(),
                vni: 7,
                zone: 3,
                subnet: "10.0.0.0/24".parse().unwrap(),
                groups: vec![group],
                metadata: Metadata {
                    instance_id: "i".into(),
                    hostname: "h".into(),
                    local_ipv4: "10.0.0.5".parse().unwrap(),
                    public_ipv4: None,
                    ssh_keys: vec!["ssh-ed25519 AAAA".into()],
                    user_data: Some("#cloud-config\n".into()),
                    mac: "52:54:00:0a:1b:2c".into(),
                },
            }],
            public_pool: Some("192.0.2.0/28".parse().unwrap()),
            ..DesiredNet::default()
        };
        want.rules.insert(
            group,
            vec![RuleNet {
                ingress: true,
                protocol: Some("tcp".into()),
                ports: Some((22, 22)),
                peer: PeerNet::Group(group),
            }],
        );
        let call = Call::ApplyNetwork { want };
        assert_eq!(trip(&call), call);
    }

    #[tokio::test]
    async fn errors_keep_their_kind_and_message() {
        let missing = HostError::NotFound("instance x is not on this host".into());
        let agent = JsonRoundTrip(Answers(Reply::Err(missing.clone())));
        assert_eq!(agent.status(InstanceId::new_v7()).await, Err(missing));
        let agent = JsonRoundTrip(Answers(Reply::Ok(serde_json::json!("Running"))));
        assert_eq!(agent.status(InstanceId::new_v7()).await, Ok(GuestStatus::Running));
        // An answer of the wrong shape is the transport's failure, not the host's.
        let err = agent.host_info().await.unwrap_err();
        assert!(matches!(&err, HostError::Unreachable(m) if m.starts_with("host_info: the agent's answer")), "{err:?}");
        let text = serde_json::to_string(&HostError::Tool("qemu-img failed".into())).unwrap();
        assert_eq!(text, r#"{"kind":"tool","message":"qemu-img failed"}"#);
    }

    #[test]
    fn image_info_keeps_qemu_img_field_names() {
        let info: ImageInfo = serde_json::from_str(
            r#"{"format":"qcow2","virtual-size":1073741824,"format-specific":{"data":{"data-file":"/x"}}}"#,
        )
        .unwrap();
        let Reply::Ok(back) = trip(&Reply::Ok(info.clone())) else { panic!("not ok") };
        assert_eq!(back, info);
        assert_eq!(back.external_data_file(), Some("/x"));
    }
}
