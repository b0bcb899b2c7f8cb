//! The Kumo API resource model, shared by the server (`kumo-control`), the store and every client
//! (`kumo-cli`). Everything that crosses the wire is declared here, once: identity metadata, names,
//! views, create parameters, the error body, pagination, and the instance state machine.

pub mod access_key;
pub mod backup;
pub mod billing;
pub mod bucket;
pub mod error;
pub mod event;
pub mod host;
pub mod id;
pub mod identity;
pub mod image;
pub mod instance;
pub mod instance_type;
pub mod metrics;
pub mod money;
pub mod name;
pub mod network;
pub mod page;
pub mod placement;
pub mod project;
pub mod snapshot;
pub mod volume;

pub use access_key::{AccessKeyCreate, AccessKeyCreated, AccessKeyView};
pub use backup::{BackupCreate, BackupView};
pub use bucket::{BucketCreate, BucketUpdate, BucketVersioning, BucketView};
pub use error::{ErrorBody, ErrorCode};
pub use event::EventView;
pub use host::{
    check_labels, labels_text, DrainState, DrainView, HostLabelsSet, HostRole, HostState, HostView, JoinTokenCreate,
    JoinTokenCreated, Labels, ZoneCreate, ZoneView, JOIN_TOKEN_DEFAULT_SECONDS, JOIN_TOKEN_MAX_SECONDS,
    JOIN_TOKEN_MIN_SECONDS, MAX_LABELS,
};
pub use id::{
    AccessKeyId, AuditEntryId, BackupId, BlobId, BucketId, EventId, FloatingIpId, HostId, Id, ImageId, InstanceId,
    InstanceTypeId, InvoiceId, JoinTokenId, MigrationId, NicId, ObjectId, PlacementGroupId, PriceId, ProjectId,
    SecurityGroupId, SnapshotId, SshKeyId, SubnetId, TokenId, UploadId, UserId, VolumeId, VpcId, ZoneId,
};
pub use identity::{
    AuditEntryView, LoginRequest, LoginResponse, MeView, MemberAdd, MemberView, MyProjectView, ProjectRole,
    TokenCreate, TokenCreated, TokenView, UserCreate, UserView,
};
pub use image::{ImageBoot, ImageCreate, ImageFacts, ImageView};
pub use instance::{
    InstanceAction, InstanceCreate, InstanceMigrate, InstanceObservation, InstanceResize, InstanceState, InstanceView,
    Transition, USER_DATA_MAX_BYTES,
};
pub use instance_type::{InstanceTypeCreate, InstanceTypeView};
pub use metrics::{MetricPoint, MetricSeries};
pub use name::{Name, NameOrId};
pub use network::{
    FloatingIpAttach, FloatingIpCreate, FloatingIpView, NetworkInterfaceView, SecurityGroupCreate, SecurityGroupView,
    SecurityRule, SecurityRules, SshKeyCreate, SshKeyView, SubnetCreate, SubnetView, VpcCreate, VpcView,
};
pub use page::{PageParams, ResultsPage, SortBy};
pub use placement::{PlacementGroupCreate, PlacementGroupView, PlacementPolicy, PLACEMENT_GROUPS_PER_PROJECT};
pub use project::{ProjectCreate, ProjectView};
pub use snapshot::{SnapshotCreate, SnapshotView};
pub use volume::{
    VolumeAction, VolumeAttach, VolumeCreate, VolumeIoLimits, VolumeObservation, VolumeResize, VolumeState,
    VolumeTransition, VolumeView,
};

/// Timestamps on the wire are RFC 3339 UTC.
pub type Timestamp = chrono::DateTime<chrono::Utc>;
