//! The seam as messages: every [`HostAgent`] call as one value of [`Call`], every answer as a
//! [`Reply`], both plain JSON. This is the only place that lists the calls for a wire: the table
//! at the bottom makes, from one line per call,
//!
//! - [`Call`], the message (`{"call": "stop", "args": {"id": "…", "grace": {"secs": 30, "nanos": 0}}}`);
//! - [`dispatch`], the server side: runs a `Call` on an agent and encodes its result;
//! - the client side: every [`Transport`] (something that carries a `Call` to an agent and brings
//!   the answer back) is a [`HostAgent`], by a blanket implementation.
//!
//! Two calls are not in the table: [`HostAgent::read_export`] and [`HostAgent::write_import`]
//! carry disk bytes, which a transport moves as raw bytes ([`Transport::read_chunk`],
//! [`Transport::write_chunk`]), never as JSON.
//!
//! The compiler checks the table against the trait both ways (a missing or mistyped call fails
//! the blanket implementation). A transport carries bytes only: [`crate::JsonRoundTrip`] in
//! process, `kumo_host_rpc::client::RemoteAgent` over HTTPS.
//!
//! An answer is `{"ok": RESULT}` or `{"err": {"kind": "not_found", "message": "…"}}`: the host's
//! own errors keep their kind across the wire. A transport's failures (nothing sent, nothing or
//! nothing readable back) are [`HostError::Unreachable`].

use crate::*;
use serde::de::DeserializeOwned;

/// What an agent answers to a [`Call`]: its result, or the host's error with its kind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reply<T> {
    Ok(T),
    Err(HostError),
}

impl<T> From<Result<T>> for Reply<T> {
    fn from(r: Result<T>) -> Reply<T> {
        match r {
            Ok(v) => Reply::Ok(v),
            Err(e) => Reply::Err(e),
        }
    }
}

impl<T> From<Reply<T>> for Result<T> {
    fn from(r: Reply<T>) -> Result<T> {
        match r {
            Reply::Ok(v) => Ok(v),
            Reply::Err(e) => Err(e),
        }
    }
}

/// Carries a [`Call`] to an agent and brings its answer back: the JSON of a [`Reply`], as
/// [`dispatch`] made it. Fails only with [`HostError::Unreachable`] (the host's own errors are in
/// the answer). Every transport is a [`HostAgent`] (the blanket implementation below).
#[async_trait]
pub trait Transport: Send + Sync + 'static {
    async fn send(&self, call: &Call) -> Result<Vec<u8>>;

    /// [`HostAgent::read_export`]: disk bytes travel as bytes, not in a [`Call`]. A transport
    /// that carries no bytes refuses.
    async fn read_chunk(&self, id: InstanceId, offset: u64, max: u64) -> Result<Vec<u8>> {
        let _ = (id, offset, max);
        Err(HostError::Unreachable("read_export: this transport carries no disk bytes".into()))
    }

    /// [`HostAgent::write_import`], as raw bytes (see [`Transport::read_chunk`]).
    async fn write_chunk(&self, id: InstanceId, offset: u64, bytes: Vec<u8>) -> Result<()> {
        let _ = (id, offset, bytes);
        Err(HostError::Unreachable("write_import: this transport carries no disk bytes".into()))
    }
}

/// `result` as the answer's JSON.
fn encode<T: Serialize>(call: &str, result: Result<T>) -> serde_json::Value {
    serde_json::to_value(Reply::from(result)).unwrap_or_else(|e| {
        let err = HostError::Unreachable(format!("{call}: the agent could not encode its answer: {e}"));
        serde_json::to_value(Reply::<()>::Err(err)).unwrap_or(serde_json::Value::Null)
    })
}

/// Sends `call` through `transport` and reads its answer.
async fn call<T: DeserializeOwned>(transport: &(impl Transport + ?Sized), call: Call) -> Result<T> {
    let answer = transport.send(&call).await?;
    let reply: Reply<T> = serde_json::from_slice(&answer).map_err(|e| {
        let text = String::from_utf8_lossy(&answer[..answer.len().min(200)]).into_owned();
        HostError::Unreachable(format!("{}: the agent's answer cannot be read ({e}): {text}", call.name()))
    })?;
    reply.into()
}

/// Makes [`Call`], [`dispatch`] and the blanket `HostAgent` implementation of every [`Transport`]
/// from one line per call: `Variant => method(arg: Type, …) -> Result;`.
macro_rules! calls {
    ($( $variant:ident => $method:ident ( $($arg:ident : $ty:ty),* ) -> $out:ty; )*) => {
        /// One call of the [`HostAgent`] API with its arguments (see the trait for what each does).
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
        #[serde(tag = "call", content = "args", rename_all = "snake_case", deny_unknown_fields)]
        pub enum Call {
            $( $variant { $($arg: $ty),* }, )*
        }

        impl Call {
            /// The call's name on the wire (the trait method's), e.g. `stop`.
            pub fn name(&self) -> &'static str {
                match self {
                    $( Call::$variant { .. } => stringify!($method), )*
                }
            }
        }

        /// Runs `call` on `agent`; returns its [`Reply`] as JSON (what a transport sends back).
        pub async fn dispatch(agent: &dyn HostAgent, call: Call) -> serde_json::Value {
            match call {
                $( Call::$variant { $($arg),* } => encode(stringify!($method), agent.$method($($arg),*).await), )*
            }
        }

        #[async_trait]
        impl<T: Transport> HostAgent for T {
            $(
                async fn $method(&self, $($arg: $ty),*) -> Result<$out> {
                    call(self, Call::$variant { $($arg),* }).await
                }
            )*

            async fn read_export(&self, id: InstanceId, offset: u64, max: u64) -> Result<Vec<u8>> {
                self.read_chunk(id, offset, max).await
            }

            async fn write_import(&self, id: InstanceId, offset: u64, bytes: Vec<u8>) -> Result<()> {
                self.write_chunk(id, offset, bytes).await
            }
        }
    };
}

calls! {
    HostInfo => host_info() -> HostInfo;
    Provision => provision(spec: InstanceSpec) -> ();
    Start => start(spec: InstanceSpec) -> ();
    Status => status(id: InstanceId) -> GuestStatus;
    Stop => stop(id: InstanceId, grace: Duration) -> ();
    Reboot => reboot(id: InstanceId) -> ();
    Destroy => destroy(id: InstanceId) -> ();
    Serial => serial(id: InstanceId, offset: u64, max: u64) -> SerialChunk;
    TrimSerialLogs => trim_serial_logs(max_bytes: u64) -> u64;
    ListInstances => list_instances() -> Vec<InstanceId>;
    QuarantineInstance => quarantine_instance(id: InstanceId) -> ();
    Sample => sample(id: InstanceId) -> Option<InstanceSample>;
    CreateVolume => create_volume(id: VolumeId, size_bytes: u64, origin: VolumeOrigin, encrypted: bool) -> ();
    DeleteVolume => delete_volume(id: VolumeId) -> ();
    ListVolumes => list_volumes() -> Vec<VolumeId>;
    QuarantineVolume => quarantine_volume(id: VolumeId) -> ();
    CollectLayers => collect_layers(keep: HashSet<SnapshotId>) -> u64;
    AttachVolume => attach_volume(instance: InstanceId, volume: VolumeDisk) -> ();
    SetVolumeLimits => set_volume_limits(instance: InstanceId, volume: VolumeId, limits: IoLimits) -> ();
    DetachVolume => detach_volume(instance: InstanceId, volume: VolumeId, deadline: Duration) -> ();
    GrowVolume => grow_volume(instance: Option<InstanceId>, volume: VolumeId, size_bytes: u64) -> ();
    SnapshotVolume => snapshot_volume(instance: Option<InstanceId>, volume: VolumeId, snapshot: SnapshotId) -> ();
    BackupVolume => backup_volume(volume: VolumeId, project: ProjectId, backup: BackupId) -> BackupStats;
    DeleteBackup => delete_backup(project: ProjectId, backup: BackupId) -> bool;
    SweepBackups => sweep_backups(grace: Duration) -> SweepStats;
    InspectUpload => inspect_upload(file: ImageFile) -> ImageInfo;
    CheckUpload => check_upload(file: ImageFile) -> ();
    ConvertUpload => convert_upload(src: ImageFile, format: String, dst: ImageFile, max_out_bytes: u64) -> ();
    ImageInfo => image_info(file: ImageFile) -> ImageInfo;
    ExportSnapshot => export_snapshot(snapshot: SnapshotId, dst: ImageFile) -> ();
    ExportRootDisk => export_root_disk(id: InstanceId, dst: ImageFile) -> ();
    ExportDisk => export_disk(id: InstanceId) -> DiskExport;
    FinishImport => finish_import(id: InstanceId, expect: DiskExport) -> ();
    DiscardMove => discard_move(id: InstanceId) -> ();
    ApplyNetwork => apply_network(want: DesiredNet) -> Option<ApplyReport>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_reads_as_its_name_and_arguments() {
        let id = InstanceId::new_v7();
        let call = Call::Stop { id, grace: Duration::from_secs(30) };
        let text = serde_json::to_string(&call).unwrap();
        assert_eq!(text, format!(r#"{{"call":"stop","args":{{"id":"{id}","grace":{{"secs":30,"nanos":0}}}}}}"#));
        assert_eq!(serde_json::from_str::<Call>(&text).unwrap(), call);
        assert_eq!(call.name(), "stop");
        let none: Call = serde_json::from_str(r#"{"call":"host_info","args":{}}"#).unwrap();
        assert_eq!(none, Call::HostInfo {});
    }

    #[test]
    fn unknown_calls_and_arguments_are_refused() {
        let err = serde_json::from_str::<Call>(r#"{"call":"format_disk","args":{}}"#).unwrap_err();
        assert!(err.to_string().contains("unknown variant `format_disk`"), "{err}");
        let err = serde_json::from_str::<Call>(r#"{"call":"reboot","args":{"id":"x"}}"#).unwrap_err();
        assert!(err.to_string().contains("UUID"), "{err}");
        let id = InstanceId::new_v7();
        let extra = format!(r#"{{"call":"reboot","args":{{"id":"{id}","force":true}}}}"#);
        assert!(serde_json::from_str::<Call>(&extra).is_err());
    }

    #[test]
    fn answers_keep_the_error_kind() {
        let r: Result<()> = Err(HostError::NotFound("instance x is not on this host".into()));
        let v = encode("status", r.clone());
        assert_eq!(v, serde_json::json!({"err": {"kind": "not_found", "message": "instance x is not on this host"}}));
        assert_eq!(Result::from(serde_json::from_value::<Reply<()>>(v).unwrap()), r);
        assert_eq!(encode("trim_serial_logs", Ok(7u64)), serde_json::json!({"ok": 7}));
    }
}
