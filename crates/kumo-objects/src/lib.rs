//! Object data: the bytes of the object storage service's objects, apart from their metadata
//! (which the control plane keeps in the store, see `kumo_store::objects`).
//!
//! Data are kept as *blobs*: immutable byte strings named by an id the caller picks. An object is
//! one blob (a PUT) or several (the parts of a multipart upload, never concatenated: completing a
//! 1 GiB upload writes nothing again). A blob is written whole or not at all: [`ObjectData::write`]
//! returns only once the bytes are durable (fsynced, renamed into place, the directory fsynced), so
//! the caller may then commit the metadata that names it; a blob no metadata names (a crash between
//! the two, an overwritten or deleted object) is an orphan that the sweep removes
//! ([`ObjectData::list`] + [`ObjectData::remove`]) once it is older than any write in flight.
//!
//! Every blob's MD5 (for S3 ETags), CRC32C and the CRC32C of each of its [`BLOCK`]-sized blocks
//! are returned by the write and kept by the caller; a read given them ([`Check`]) verifies every
//! byte it serves — a ranged read reads and checks the whole blocks its range touches — and ends
//! in an error instead of unverified bytes when they differ, so a flipped byte on disk is never
//! served as data. (CRC32C, not MD5, because it is computed at memory speed: verifying MD5 took
//! 70 % of a GET's CPU here.)
//!
//! [`LocalDir`] is the implementation on a local filesystem (the default). The trait takes and
//! gives only ids and byte streams, so a distributed implementation (Ceph RADOS objects, striped)
//! can serve one namespace from several hosts without a change to its callers.

mod local;

pub use local::LocalDir;

use bytes::Bytes;
use futures::Stream;
use std::ops::Range;
use std::pin::Pin;
use std::time::SystemTime;
use uuid::Uuid;

/// A stream of bytes in or out of a backend.
pub type ByteStream = Pin<Box<dyn Stream<Item = std::io::Result<Bytes>> + Send>>;

/// What went wrong with object data.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("blob {0} does not exist")]
    NotFound(Uuid),
    /// The body was longer than the caller allows.
    #[error("the body is larger than {0} bytes")]
    TooLarge(u64),
    /// The stored bytes do not match their checksum (damage on disk).
    #[error("blob {0} is damaged: its bytes do not match their CRC32C checksum")]
    Corrupt(Uuid),
    /// The body stream failed (the client went away, a bad chunk signature, …).
    #[error("reading the body: {0}")]
    Body(std::io::Error),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

pub type Result<T> = std::result::Result<T, Error>;

/// The unit of verification of ranged reads: each block of a blob has its own CRC32C.
pub const BLOCK: u64 = 1 << 20;

/// A blob durably written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    pub size: u64,
    pub md5: [u8; 16],
    pub crc32c: u32,
    /// CRC32C of each [`BLOCK`] of the blob, in order (the last one may be shorter).
    pub blocks: Vec<u32>,
}

/// What a read verifies the bytes against (what the write returned); nothing is verified with
/// neither.
#[derive(Debug, Clone, Default)]
pub struct Check {
    /// The whole blob's CRC32C: verifies a read of the whole blob.
    pub crc32c: Option<u32>,
    /// Each block's: verifies any read (blobs written before blocks were summed have none).
    pub blocks: Option<std::sync::Arc<[u32]>>,
}

/// Where object data live.
#[async_trait::async_trait]
pub trait ObjectData: Send + Sync + 'static {
    /// Writes blob `id` from `body` (at most `limit` bytes, else [`Error::TooLarge`] and nothing
    /// is kept); durable when it returns.
    async fn write(&self, id: Uuid, body: ByteStream, limit: u64) -> Result<Written>;

    /// Reads `range` of blob `id` (clamped to its size), verified as `check` allows: with the
    /// blocks' sums, every block the range touches is read whole and checked before any of its
    /// bytes is given; with only the blob's sum, a read of the whole blob is checked (the stream
    /// ends in an error, not its last chunk). A mismatch is [`Error::Corrupt`] in the stream.
    async fn read(&self, id: Uuid, range: Range<u64>, check: Check) -> Result<ByteStream>;

    /// Removes blob `id` (no error when it is already gone).
    async fn remove(&self, id: Uuid) -> Result<()>;

    /// Every blob written before `before` (the sweep's candidates).
    async fn list(&self, before: SystemTime) -> Result<Vec<Uuid>>;

    /// Bytes used by blobs (for metrics and tests).
    async fn used_bytes(&self) -> Result<u64>;
}

/// A running CRC32C.
pub(crate) fn crc32c() -> crc_fast::Digest {
    crc_fast::Digest::new(crc_fast::CrcAlgorithm::Crc32Iscsi)
}
