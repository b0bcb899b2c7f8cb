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
//! Every blob's MD5 (for S3 ETags) and CRC32C are returned by the write and kept by the caller; a
//! read given the CRC32C verifies the bytes and ends in an error instead of the last chunk when
//! they differ, so a flipped byte on disk is never served as data. (CRC32C, not MD5, because it
//! is computed at memory speed: verifying MD5 took 70 % of a GET's CPU here.)
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

/// A blob durably written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Written {
    pub size: u64,
    pub md5: [u8; 16],
    pub crc32c: u32,
}

/// Where object data live.
#[async_trait::async_trait]
pub trait ObjectData: Send + Sync + 'static {
    /// Writes blob `id` from `body` (at most `limit` bytes, else [`Error::TooLarge`] and nothing
    /// is kept); durable when it returns.
    async fn write(&self, id: Uuid, body: ByteStream, limit: u64) -> Result<Written>;

    /// Reads `range` of blob `id` (clamped to its size). Given the blob's CRC32C and a range that
    /// is the whole blob, the bytes are verified: the stream ends in an error, not its last chunk,
    /// when they do not match.
    async fn read(&self, id: Uuid, range: Range<u64>, crc32c: Option<u32>) -> Result<ByteStream>;

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
