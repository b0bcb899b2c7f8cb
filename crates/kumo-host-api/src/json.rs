//! [`JsonRoundTrip`]: a [`HostAgent`] adapter that sends every call's arguments and its result
//! (or error) through serde_json before passing them on. It changes nothing when the seam is
//! sound; a field that does not survive the trip breaks the tests that run on it (`kumod
//! --agent-adapter json`, `KUMO_TEST_AGENT=json`; see scripts/test.sh). It proves that a remote
//! agent can carry every call as it is.
//!
//! Bulk data is not part of a call (backups and image files are artifacts named by id; see
//! [`crate::storage`]): moving them is the transport's job, so this adapter has none to pass.

use crate::*;
use serde::de::DeserializeOwned;

/// Wraps `A`, round-tripping everything that crosses through JSON.
pub struct JsonRoundTrip<A>(pub A);

/// `v` as the other side of a JSON wire reads it.
fn wire<T: Serialize + DeserializeOwned>(call: &str, v: T) -> Result<T> {
    let text = serde_json::to_string(&v).map_err(|e| HostError::Unreachable(format!("{call}: encoding: {e}")))?;
    serde_json::from_str(&text).map_err(|e| HostError::Unreachable(format!("{call}: decoding {text}: {e}")))
}

/// Sends the arguments over, makes the call, sends its result back.
macro_rules! call {
    ($self:ident . $method:ident ( $($arg:ident),* )) => {{
        $( let $arg = wire(stringify!($method), $arg)?; )*
        let out = $self.0.$method($($arg),*).await;
        wire(stringify!($method), out)?
    }};
}

#[async_trait]
impl<A: HostAgent> HostAgent for JsonRoundTrip<A> {
    async fn host_info(&self) -> Result<HostInfo> {
        call!(self.host_info())
    }
    async fn provision(&self, spec: InstanceSpec) -> Result<()> {
        call!(self.provision(spec))
    }
    async fn start(&self, spec: InstanceSpec) -> Result<()> {
        call!(self.start(spec))
    }
    async fn status(&self, id: InstanceId) -> Result<GuestStatus> {
        call!(self.status(id))
    }
    async fn stop(&self, id: InstanceId, grace: Duration) -> Result<()> {
        call!(self.stop(id, grace))
    }
    async fn reboot(&self, id: InstanceId) -> Result<()> {
        call!(self.reboot(id))
    }
    async fn destroy(&self, id: InstanceId) -> Result<()> {
        call!(self.destroy(id))
    }
    async fn serial(&self, id: InstanceId, offset: u64, max: u64) -> Result<SerialChunk> {
        call!(self.serial(id, offset, max))
    }
    async fn trim_serial_logs(&self, max_bytes: u64) -> Result<u64> {
        call!(self.trim_serial_logs(max_bytes))
    }
    async fn list_instances(&self) -> Result<Vec<InstanceId>> {
        call!(self.list_instances())
    }
    async fn quarantine_instance(&self, id: InstanceId) -> Result<()> {
        call!(self.quarantine_instance(id))
    }
    async fn sample(&self, id: InstanceId) -> Result<Option<InstanceSample>> {
        call!(self.sample(id))
    }
    async fn create_volume(&self, id: VolumeId, size_bytes: u64, origin: VolumeOrigin, encrypted: bool) -> Result<()> {
        call!(self.create_volume(id, size_bytes, origin, encrypted))
    }
    async fn delete_volume(&self, id: VolumeId) -> Result<()> {
        call!(self.delete_volume(id))
    }
    async fn list_volumes(&self) -> Result<Vec<VolumeId>> {
        call!(self.list_volumes())
    }
    async fn quarantine_volume(&self, id: VolumeId) -> Result<()> {
        call!(self.quarantine_volume(id))
    }
    async fn collect_layers(&self, keep: HashSet<SnapshotId>) -> Result<u64> {
        call!(self.collect_layers(keep))
    }
    async fn attach_volume(&self, instance: InstanceId, volume: VolumeDisk) -> Result<()> {
        call!(self.attach_volume(instance, volume))
    }
    async fn set_volume_limits(&self, instance: InstanceId, volume: VolumeId, limits: IoLimits) -> Result<()> {
        call!(self.set_volume_limits(instance, volume, limits))
    }
    async fn detach_volume(&self, instance: InstanceId, volume: VolumeId, deadline: Duration) -> Result<()> {
        call!(self.detach_volume(instance, volume, deadline))
    }
    async fn grow_volume(&self, instance: Option<InstanceId>, volume: VolumeId, size_bytes: u64) -> Result<()> {
        call!(self.grow_volume(instance, volume, size_bytes))
    }
    async fn snapshot_volume(
        &self,
        instance: Option<InstanceId>,
        volume: VolumeId,
        snapshot: SnapshotId,
    ) -> Result<()> {
        call!(self.snapshot_volume(instance, volume, snapshot))
    }
    async fn backup_volume(&self, volume: VolumeId, project: ProjectId, backup: BackupId) -> Result<BackupStats> {
        call!(self.backup_volume(volume, project, backup))
    }
    async fn delete_backup(&self, project: ProjectId, backup: BackupId) -> Result<bool> {
        call!(self.delete_backup(project, backup))
    }
    async fn sweep_backups(&self, grace: Duration) -> Result<SweepStats> {
        call!(self.sweep_backups(grace))
    }
    async fn inspect_upload(&self, file: ImageFile) -> Result<ImageInfo> {
        call!(self.inspect_upload(file))
    }
    async fn check_upload(&self, file: ImageFile) -> Result<()> {
        call!(self.check_upload(file))
    }
    async fn convert_upload(&self, src: ImageFile, format: String, dst: ImageFile, max_out_bytes: u64) -> Result<()> {
        call!(self.convert_upload(src, format, dst, max_out_bytes))
    }
    async fn image_info(&self, file: ImageFile) -> Result<ImageInfo> {
        call!(self.image_info(file))
    }
    async fn export_snapshot(&self, snapshot: SnapshotId, dst: ImageFile) -> Result<()> {
        call!(self.export_snapshot(snapshot, dst))
    }
    async fn export_root_disk(&self, id: InstanceId, dst: ImageFile) -> Result<()> {
        call!(self.export_root_disk(id, dst))
    }
    async fn apply_network(&self, want: DesiredNet) -> Result<Option<ApplyReport>> {
        call!(self.apply_network(want))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::{Metadata, NicNet, PeerNet, RuleNet, VpcNet};

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
        assert_eq!(wire("apply_network", want.clone()).unwrap(), want);
    }

    #[test]
    fn errors_keep_their_kind_and_message() {
        let r: Result<()> = Err(HostError::NotFound("instance x is not on this host".into()));
        assert_eq!(wire("status", r.clone()).unwrap(), r);
        let text = serde_json::to_string(&HostError::Tool("qemu-img failed".into())).unwrap();
        assert_eq!(text, r#"{"kind":"tool","message":"qemu-img failed"}"#);
    }

    #[test]
    fn image_info_keeps_qemu_img_field_names() {
        let info: ImageInfo = serde_json::from_str(
            r#"{"format":"qcow2","virtual-size":1073741824,"format-specific":{"data":{"data-file":"/x"}}}"#,
        )
        .unwrap();
        let back = wire("image_info", info.clone()).unwrap();
        assert_eq!(back, info);
        assert_eq!(back.external_data_file(), Some("/x"));
    }
}
