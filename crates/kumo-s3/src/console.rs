//! Objects for front ends other than the S3 protocol (the dashboard's buckets page).
//!
//! The S3 operations stay the one implementation: a [`ConsoleBucket`] lists a "folder" with
//! [`crate::listing::page`], writes an object with the `PutObject` path ([`KumoS3::write_body`]
//! then [`KumoS3::put`]: the same quota charge, checksums, durability and audit entry), reads it
//! with [`KumoS3::read_range`] and deletes it with [`KumoS3::delete_key`]. What differs is only the
//! caller and the errors: the caller is an [`OpContext`] (a dashboard session), authorised with the
//! REST API's check, and errors are the API's [`ApiError`] (a non-member of the project gets the
//! API's 404, a viewer writing gets its 403) instead of S3 error documents.

use crate::service::{Authorised, KumoS3, StoredHeaders};
use bytes::Bytes;
use futures::{Stream, TryStreamExt};
use kumo_control::context::{Access, OpContext};
use kumo_control::error::{ApiError, ApiResult};
use kumo_control::App;
use kumo_objects::ByteStream;
use kumo_types::ErrorCode;
use s3s::dto::StreamingBlob;
use s3s::{S3Error, S3ErrorCode};
use serde::Serialize;
use std::sync::Arc;

/// The most entries (folders and objects) one page of a folder holds: S3's `max-keys` limit.
pub const MAX_PAGE: usize = 1000;

/// The delimiter that makes keys look like paths.
pub const DELIMITER: &str = "/";

/// An object, as a listing or a download describes it.
#[derive(Debug, Clone, Serialize)]
pub struct ObjectInfo {
    pub key: String,
    pub size: u64,
    /// The ETag (MD5 of the bytes, or the multipart `md5-of-md5s-N` form), without quotes.
    pub etag: String,
    pub last_modified: chrono::DateTime<chrono::Utc>,
    /// The Content-Type given at upload, if any.
    pub content_type: Option<String>,
}

impl ObjectInfo {
    fn of(o: &kumo_store::objects::Object) -> ObjectInfo {
        ObjectInfo {
            key: o.key.clone(),
            size: o.size,
            etag: o.etag.clone(),
            last_modified: o.time_modified,
            content_type: StoredHeaders::from_json(&o.headers).content_type,
        }
    }
}

/// One page of the keys under a prefix, split at [`DELIMITER`] like a directory listing.
#[derive(Debug, Clone, Serialize)]
pub struct Folder {
    pub prefix: String,
    /// The common prefixes ("sub-folders"), each ending with the delimiter, in byte order.
    pub folders: Vec<String>,
    pub objects: Vec<ObjectInfo>,
    /// Where the next page starts after (the last key or folder of this page), when there is one.
    pub next_after: Option<String>,
}

/// What a PUT stored.
#[derive(Debug, Clone, Serialize)]
pub struct Stored {
    pub key: String,
    pub size: u64,
    pub etag: String,
}

/// A bucket the caller may read (their project's), ready for object operations; each operation
/// that writes checks the caller's role again.
pub struct ConsoleBucket {
    s3: KumoS3,
    a: Authorised,
    ctx: OpContext,
}

impl ConsoleBucket {
    /// The bucket `bucket` of `project`, for a caller who may read it. Not a member of the project:
    /// the API's 404 for the project; no such bucket in it (or one of another project): 404.
    pub async fn open(app: Arc<App>, ctx: &OpContext, project: &str, bucket: &str) -> ApiResult<ConsoleBucket> {
        let found = {
            let mut conn = kumo_control::app::read(&app).await?;
            let p = kumo_control::app::project(&mut conn, ctx, Some(project), Access::Read).await?;
            kumo_store::objects::bucket_by_name(&mut conn, bucket).await?.filter(|b| b.project_id == p.id)
        };
        // Reading was authorised with the project (the API's check); writes check again.
        let b = found.ok_or_else(|| ApiError::not_found("bucket", bucket))?;
        Ok(ConsoleBucket {
            s3: KumoS3::new(app),
            a: Authorised { bucket: b, who: Some(ctx.clone()) },
            ctx: ctx.clone(),
        })
    }

    pub fn name(&self) -> &str {
        &self.a.bucket.name
    }

    pub fn public_read(&self) -> bool {
        self.a.bucket.public_read
    }

    fn authorize(&self, access: Access) -> ApiResult<()> {
        self.ctx.authorize_project(self.a.bucket.project_id, &self.a.bucket.project_name, access)
    }

    /// Up to `max` (1 to [`MAX_PAGE`]) folders and objects directly under `prefix`, after the key
    /// or folder `after` (a previous page's [`Folder::next_after`]).
    pub async fn folder(&self, prefix: &str, after: Option<&str>, max: usize) -> ApiResult<Folder> {
        let max = max.clamp(1, MAX_PAGE);
        let after = after.filter(|a| !a.is_empty());
        let p = crate::listing::page(&self.s3, &self.a.bucket, prefix, Some(DELIMITER), after, max)
            .await
            .map_err(|e| api_error(e, ""))?;
        Ok(Folder {
            prefix: prefix.to_string(),
            folders: p.prefixes,
            objects: p.objects.iter().map(ObjectInfo::of).collect(),
            next_after: if p.truncated { p.last } else { None },
        })
    }

    /// Stores `body` as the object `key` (replacing any), exactly as an S3 `PutObject` does: a
    /// quota precheck on `content_length` when known, the bytes written and made durable as a
    /// new blob, then the object committed with its quota charge and audit entry. Collaborators
    /// and owners only.
    pub async fn put<S, E>(
        &self,
        key: &str,
        content_type: Option<String>,
        content_length: Option<u64>,
        body: S,
    ) -> ApiResult<Stored>
    where
        S: Stream<Item = Result<Bytes, E>> + Send + 'static,
        E: std::fmt::Display + Send + 'static,
    {
        self.authorize(Access::Write)?;
        check_key(key)?;
        let length = content_length.map_or(0, |n| i64::try_from(n).unwrap_or(i64::MAX));
        self.s3.precheck(&self.a, 0, length).await.map_err(|e| api_error(e, key))?;
        let body = body.map_err(|e| std::io::Error::other(e.to_string()));
        let blob = StreamingBlob::wrap(sync_wrapper::SyncStream::new(body));
        // No checksum headers or trailers: the body's MD5 (the ETag) and CRC32C are still
        // computed and stored by the write, as for any PUT.
        let (blob, sums) = self
            .s3
            .write_body(Some(blob), &axum::http::HeaderMap::new(), None, 0)
            .await
            .map_err(|e| api_error(e, key))?;
        let size = blob.size;
        let headers = StoredHeaders { content_type: content_type.filter(|c| !c.is_empty()), ..Default::default() };
        let etag = self.s3.put(&self.a, key, (headers, false), blob, sums).await.map_err(|e| api_error(e, key))?.etag;
        Ok(Stored { key: key.to_string(), size, etag })
    }

    /// The object `key`: its description and its bytes (verified against the stored CRC32C as
    /// they are read, like an S3 GET).
    pub async fn get(&self, key: &str) -> ApiResult<(ObjectInfo, ByteStream)> {
        let o = self.s3.object_at(&self.a.bucket, key, None).await.map_err(|e| api_error(e, key))?;
        let body = self.s3.read_range(&o, 0..o.size).await.map_err(|e| api_error(e, key))?;
        Ok((ObjectInfo::of(&o), body))
    }

    /// Deletes the object `key` (releasing its quota, audited); a key that does not exist is not
    /// an error, as in S3. Collaborators and owners only.
    pub async fn delete(&self, key: &str) -> ApiResult<()> {
        self.authorize(Access::Write)?;
        check_key(key)?;
        self.s3.delete_key(&self.a, key, None).await.map(|_| ()).map_err(|e| api_error(e, key))
    }
}

/// S3's key rule (at most 1,024 bytes, as the endpoint's path parser checks) and the store's (no
/// NUL); an empty key names no object.
fn check_key(key: &str) -> ApiResult<()> {
    if key.is_empty() {
        return Err(ApiError::invalid("an object key must not be empty"));
    }
    if !s3s::path::check_key(key) {
        return Err(ApiError::invalid(format!("the object key is {} bytes long; at most 1024 are allowed", key.len())));
    }
    if key.contains('\0') {
        return Err(ApiError::invalid("an object key must not contain a NUL character"));
    }
    Ok(())
}

/// The API's error for an S3 error of an operation on `key`. Internal errors were logged where
/// they arose (`service::internal`); their message here is the generic one.
fn api_error(e: S3Error, key: &str) -> ApiError {
    let message = e.message().map(str::to_string);
    let with = |code: ErrorCode, default: String| ApiError::new(code, message.clone().unwrap_or(default));
    match e.code() {
        S3ErrorCode::NoSuchKey => ApiError::not_found("object", key),
        S3ErrorCode::NoSuchBucket => with(ErrorCode::NotFound, "the bucket does not exist".into()),
        S3ErrorCode::AccessDenied => with(ErrorCode::Forbidden, "access denied".into()),
        S3ErrorCode::EntityTooLarge => with(ErrorCode::PayloadTooLarge, "the object is too large".into()),
        S3ErrorCode::IncompleteBody | S3ErrorCode::BadDigest | S3ErrorCode::InvalidArgument => {
            with(ErrorCode::InvalidValue, format!("the upload of '{key}' was refused"))
        }
        S3ErrorCode::Custom(c) if &**c == "QuotaExceeded" => {
            with(ErrorCode::QuotaExceeded, "the project's object storage quota is exhausted".into())
        }
        other => ApiError::internal(format!("s3 {}: {}", other.as_str(), message.unwrap_or_default())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use s3s::s3_error;

    #[test]
    fn s3_errors_become_the_apis() {
        let cases = [
            (s3_error!(NoSuchKey), ErrorCode::NotFound),
            (s3_error!(AccessDenied, "Access Denied"), ErrorCode::Forbidden),
            (s3_error!(EntityTooLarge), ErrorCode::PayloadTooLarge),
            (s3_error!(BadDigest), ErrorCode::InvalidValue),
            (s3_error!(InternalError), ErrorCode::Internal),
        ];
        for (e, code) in cases {
            assert_eq!(api_error(e, "k").code, code);
        }
        let mut quota = S3Error::with_message(S3ErrorCode::Custom("QuotaExceeded".into()), "objects: 10 of 10 used");
        quota.set_status_code(axum::http::StatusCode::FORBIDDEN);
        let e = api_error(quota, "k");
        assert_eq!((e.code, e.message.as_str()), (ErrorCode::QuotaExceeded, "objects: 10 of 10 used"));
        assert_eq!(api_error(s3_error!(NoSuchKey), "a b").message, "object 'a b' not found");
    }

    #[test]
    fn keys_follow_the_s3_rule() {
        assert!(check_key("photos/2026/a b+ü.jpg").is_ok());
        assert!(check_key(&"k".repeat(1024)).is_ok());
        assert_eq!(check_key(&"k".repeat(1025)).map_err(|e| e.code).err(), Some(ErrorCode::InvalidValue));
        assert!(check_key("").is_err());
        assert!(check_key("a\0b").is_err());
    }
}
