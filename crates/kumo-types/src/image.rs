//! Images: bootable disk templates. Public images (project null) are provided by the operator;
//! project images are imported by tenants.

use crate::ImageId;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// How an image boots.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ImageBoot {
    /// Direct kernel boot: the image carries a kernel and initrd besides its disk.
    Kernel,
    /// Firmware (BIOS) boot from the disk's boot loader.
    Disk,
}

impl ImageBoot {
    pub fn as_str(self) -> &'static str {
        match self {
            ImageBoot::Kernel => "kernel",
            ImageBoot::Disk => "disk",
        }
    }
    pub fn parse(s: &str) -> Option<ImageBoot> {
        match s {
            "kernel" => Some(ImageBoot::Kernel),
            "disk" => Some(ImageBoot::Disk),
            _ => None,
        }
    }
}

/// Parameters to make a project image from a snapshot or from a stopped instance's root disk.
/// Exactly one source.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ImageCreate {
    /// Name, unique within the project.
    pub name: crate::Name,
    /// Free-form description.
    #[serde(default)]
    #[schema(max_length = 512)]
    pub description: String,
    /// Make it from this snapshot (name or id): the volume's data at that instant.
    #[serde(default)]
    #[schema(
        pattern = "^([a-z]([a-z0-9-]{0,61}[a-z0-9])?|[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})$"
    )]
    pub source_snapshot: Option<String>,
    /// Make it from this stopped instance's root disk (name or id); it boots like the instance.
    #[serde(default)]
    #[schema(
        pattern = "^([a-z]([a-z0-9-]{0,61}[a-z0-9])?|[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})$"
    )]
    pub source_instance: Option<String>,
}

/// A bootable image.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ImageView {
    /// Unique id (UUID).
    #[schema(value_type = Uuid)]
    pub id: ImageId,
    /// Name, unique among public images or within its project.
    pub name: String,
    /// Free-form description.
    pub description: String,
    /// When it was created.
    pub time_created: chrono::DateTime<chrono::Utc>,
    /// When it was last changed.
    pub time_modified: chrono::DateTime<chrono::Utc>,
    /// Owning project, or null for a public image every project can use.
    pub project: Option<String>,
    /// Operating system it contains.
    pub os: String,
    /// How it boots.
    pub boot: ImageBoot,
    /// Virtual size of its disk in bytes.
    pub size_bytes: i64,
    /// What the image's maker says about the OS in it (from the image cache's manifest).
    #[serde(default)]
    pub os_facts: ImageFacts,
}

/// An image's OS facts; each is null when not known.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ImageFacts {
    /// Distribution (`debian`, …).
    #[serde(default)]
    pub os_family: Option<String>,
    /// Its version (`12`, …).
    #[serde(default)]
    pub os_version: Option<String>,
    /// The user cloud-init makes for the instance's SSH keys (`kumo instance ssh` logs in as it).
    #[serde(default)]
    pub default_user: Option<String>,
    /// Smallest memory an instance of the image may have: smaller instance types are refused.
    #[serde(default)]
    pub min_memory_mib: Option<i64>,
    /// Smallest root disk: an instance's root disk is grown to it (as to the image's virtual size).
    #[serde(default)]
    pub min_disk_gib: Option<i64>,
}
