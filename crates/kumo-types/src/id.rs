//! Typed ids: one newtype over a UUID per kind of resource, so the compiler — not a test — catches a
//! volume id passed where an instance id belongs.
//!
//! On the wire an id is exactly the UUID it wraps (`#[serde(transparent)]`), and in the OpenAPI
//! document it is the same `string`/`uuid` schema as before: view fields declare
//! `#[schema(value_type = Uuid)]`, so the document does not grow one component per id kind. In the
//! database an id is the UUID's text (`Display`/`FromStr`); the store reads them through
//! [`Id::KIND`]-aware helpers so a damaged row names the kind of id it failed to parse.
//!
//! ```
//! use kumo_types::{InstanceId, VolumeId};
//! fn stop(_: InstanceId) {}
//! stop(InstanceId::new_v7());
//! let _volume = VolumeId::new_v7();
//! ```
//!
//! A volume id is not an instance id:
//!
//! ```compile_fail
//! use kumo_types::{InstanceId, VolumeId};
//! fn stop(_: InstanceId) {}
//! stop(VolumeId::new_v7());
//! ```

use uuid::Uuid;

/// What every typed id offers beyond its inherent methods, for code generic over the kind (the
/// store's row parsers).
pub trait Id: Copy + Eq + std::hash::Hash + std::fmt::Display + From<Uuid> + Into<Uuid> {
    /// The kind of thing the id names, for messages ("volume").
    const KIND: &'static str;
}

macro_rules! typed_ids {
    ($($(#[$doc:meta])* $name:ident => $kind:literal;)*) => {$(
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
        #[serde(transparent)]
        pub struct $name(Uuid);

        impl $name {
            /// A new time-ordered id (UUIDv7).
            pub fn new_v7() -> Self {
                Self(Uuid::now_v7())
            }
            /// Wraps a UUID known to name this kind of thing.
            pub const fn from_uuid(id: Uuid) -> Self {
                Self(id)
            }
            /// The UUID inside.
            pub const fn get(self) -> Uuid {
                self.0
            }
            /// The UUID inside (by value, for conversions at a boundary).
            pub const fn into_uuid(self) -> Uuid {
                self.0
            }
        }

        impl Id for $name {
            const KIND: &'static str = $kind;
        }

        impl From<Uuid> for $name {
            fn from(id: Uuid) -> Self {
                Self(id)
            }
        }

        impl From<$name> for Uuid {
            fn from(id: $name) -> Uuid {
                id.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                std::fmt::Display::fmt(&self.0, f)
            }
        }

        /// Same as the UUID's, so logs read as before.
        impl std::fmt::Debug for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                std::fmt::Debug::fmt(&self.0, f)
            }
        }

        impl std::str::FromStr for $name {
            type Err = uuid::Error;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s).map(Self)
            }
        }

        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                utoipa::openapi::ObjectBuilder::new()
                    .schema_type(utoipa::openapi::schema::Type::String)
                    .format(Some(utoipa::openapi::SchemaFormat::KnownFormat(utoipa::openapi::KnownFormat::Uuid)))
                    .into()
            }
        }

        /// For `#[schema(inline)]`; view fields declare `value_type = Uuid` instead, which keeps
        /// the document free of one component per id kind.
        impl utoipa::ToSchema for $name {}
    )*};
}

typed_ids! {
    /// Id of a project.
    ProjectId => "project";
    /// Id of an instance (a virtual machine).
    InstanceId => "instance";
    /// Id of a volume.
    VolumeId => "volume";
    /// Id of a snapshot of a volume.
    SnapshotId => "snapshot";
    /// Id of a backup of a volume.
    BackupId => "backup";
    /// Id of an image.
    ImageId => "image";
    /// Id of a host (written once into its data directory).
    HostId => "host";
    /// Id of a move of an instance to another host (cold migration).
    MigrationId => "migration";
    /// Id of a user.
    UserId => "user";
    /// Id of an API token.
    TokenId => "token";
    /// Id of an S3 access key (not the access key id clients send).
    AccessKeyId => "access key";
    /// Id of an object storage bucket.
    BucketId => "bucket";
    /// Id of one version of an object in a bucket.
    ObjectId => "object";
    /// Id of a multipart upload (its S3 `UploadId`).
    UploadId => "multipart upload";
    /// Id of a blob of object data (see `kumo_objects`).
    BlobId => "blob";
    /// Id of a VPC.
    VpcId => "vpc";
    /// Id of a subnet of a VPC.
    SubnetId => "subnet";
    /// Id of a security group.
    SecurityGroupId => "security group";
    /// Id of a floating IP.
    FloatingIpId => "floating IP";
    /// Id of an SSH key.
    SshKeyId => "SSH key";
    /// Id of a network interface (NIC) of an instance.
    NicId => "network interface";
    /// Id of an instance type.
    InstanceTypeId => "instance type";
    /// Id of an event.
    EventId => "event";
    /// Id of an audit log entry.
    AuditEntryId => "audit entry";
    /// Id of a price.
    PriceId => "price";
    /// Id of an invoice.
    InvoiceId => "invoice";
    /// Id of a zone (a group of hosts).
    ZoneId => "zone";
    /// Id of a host join token.
    JoinTokenId => "join token";
    /// Id of a placement group.
    PlacementGroupId => "placement group";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_is_its_uuid_on_the_wire_and_in_text() {
        let u = Uuid::now_v7();
        let id = VolumeId::from(u);
        assert_eq!(serde_json::to_string(&id).unwrap(), serde_json::to_string(&u).unwrap());
        assert_eq!(serde_json::from_str::<VolumeId>(&format!("\"{u}\"")).unwrap(), id);
        assert_eq!(id.to_string(), u.to_string());
        assert_eq!(format!("{id:?}"), format!("{u:?}"));
        assert_eq!(u.to_string().parse::<VolumeId>().unwrap().get(), u);
        assert!("not-a-uuid".parse::<VolumeId>().is_err());
        assert_eq!(Uuid::from(id), u);
    }

    #[derive(utoipa::ToSchema)]
    #[allow(dead_code)]
    struct Both {
        plain: Uuid,
        #[schema(inline)]
        inline: InstanceId,
        #[schema(value_type = Uuid)]
        declared: VolumeId,
    }

    #[test]
    fn an_id_has_the_schema_of_a_uuid() {
        let s = serde_json::to_value(<Both as utoipa::PartialSchema>::schema()).unwrap();
        let props = &s["properties"];
        assert_eq!(props["plain"]["format"], "uuid");
        assert_eq!(props["inline"], props["plain"]);
        assert_eq!(props["declared"], props["plain"]);
    }
}
