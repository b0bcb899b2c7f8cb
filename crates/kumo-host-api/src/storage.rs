//! Volumes, backups and images as the seam names them: by id, never by a path of the host.
//!
//! - A **backup** is an artifact of the host's backup target, named by (project, backup id): the
//!   host exports the volume and stores the backup itself, and restores it into a new volume.
//! - An **image file** is an artifact of the image store, named by [`ImageFile`] (image id, file
//!   name): the host inspects, checks and converts uploads there and writes exported disks there.
//!   In the all-in-one `kumod` the image store is `DATA_DIR/images`, which the local host reads
//!   directly; a remote agent fetches and pushes these artifacts over its transport.

use kumo_types::{BackupId, ImageId, ProjectId, SnapshotId};
use serde::{Deserialize, Serialize};

/// What a new volume starts from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum VolumeOrigin {
    /// Zeroes.
    Empty,
    /// A copy-on-write clone of an image's disk (a file of the image store, as in
    /// [`crate::InstanceSpec::image_disk`]).
    Image(std::path::PathBuf),
    /// A copy-on-write clone of a snapshot's layer in the host's pool.
    Snapshot(SnapshotId),
    /// The data of a backup of the project, verified chunk by chunk.
    Backup { project: ProjectId, backup: BackupId },
}

/// A file of an image in the image store: `name` (one plain file name) of image `image`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ImageFile {
    pub image: ImageId,
    pub name: String,
}

impl ImageFile {
    pub fn new(image: ImageId, name: impl Into<String>) -> ImageFile {
        ImageFile { image, name: name.into() }
    }
}

/// What `qemu-img info --output=json` says about a file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageInfo {
    pub format: String,
    #[serde(rename = "virtual-size")]
    pub virtual_size: u64,
    #[serde(rename = "backing-filename")]
    pub backing_filename: Option<String>,
    #[serde(rename = "format-specific", default)]
    pub format_specific: Option<serde_json::Value>,
}

impl ImageInfo {
    /// A qcow2 may keep its data in an external file (`data-file`); like a backing file, that
    /// could point anywhere on the host.
    pub fn external_data_file(&self) -> Option<&str> {
        self.format_specific.as_ref()?.get("data")?.get("data-file")?.as_str()
    }
}

/// What taking a backup did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupStats {
    /// Non-zero chunks in the backup.
    pub chunks: u64,
    /// Chunks this backup had to store (the rest were in the project's store already).
    pub new_chunks: u64,
    /// Bytes this backup added to the project's store.
    pub bytes_stored: u64,
}

/// What a sweep of the backup target removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SweepStats {
    /// Chunks no manifest names (left by a deletion that found its store busy, or by a backup
    /// killed before its manifest was written).
    pub chunks: u64,
    pub chunk_bytes: u64,
    /// Half-written chunk or manifest files, and raw export/restore files of a killed kumod.
    pub temp_files: u64,
    /// Chunk stores skipped because a backup or restore held them (swept next time).
    pub busy: u64,
}
