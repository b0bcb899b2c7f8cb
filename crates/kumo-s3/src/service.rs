//! The S3 operations: buckets and objects here, listings in [`crate::listing`], multipart uploads
//! in [`crate::multipart`].

use crate::checksums::{hashing, Expected};
use futures::{StreamExt, TryStreamExt};
use kumo_control::app::access_keys::{self, S3Identity};
use kumo_control::app::buckets::RequestClass;
use kumo_control::context::{Access, OpContext};
use kumo_control::App;
use kumo_objects::ByteStream;
use kumo_store::objects::{Blob, Bucket, Deleted, NewObject, Object, Versioning, Written, NULL_VERSION};
use kumo_types::BlobId;
use s3s::auth::Credentials;
use s3s::dto::*;
use s3s::{s3_error, S3Error, S3ErrorCode, S3Request, S3Response, S3Result, S3};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;

/// The largest object a single PUT (and the largest part an upload) takes: S3's 5 GiB.
pub const MAX_PUT_BYTES: u64 = 5 << 30;

/// The S3 service.
pub struct KumoS3 {
    pub(crate) app: Arc<App>,
}

/// The caller of a request and the bucket it acts on, once authorised.
pub(crate) struct Authorised {
    pub bucket: Bucket,
    /// The caller (a key's user acting with their role in the key's project, or a dashboard
    /// session); None: an anonymous reader of a public-read bucket.
    pub who: Option<OpContext>,
}

impl Authorised {
    /// The cause recorded in the audit log.
    pub fn cause(&self, op: &str) -> String {
        match &self.who {
            Some(ctx) => ctx.cause(op),
            None => format!("s3: {op} by an anonymous caller"),
        }
    }
}

/// The headers an object keeps and gives back (standard ones and `x-amz-meta-*`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct StoredHeaders {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_encoding: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_disposition: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_language: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_control: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub meta: BTreeMap<String, String>,
}

impl StoredHeaders {
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| "{}".into())
    }

    pub fn from_json(s: &str) -> StoredHeaders {
        serde_json::from_str(s).unwrap_or_default()
    }

    fn metadata(&self) -> Option<Metadata> {
        (!self.meta.is_empty()).then(|| self.meta.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
    }
}

pub(crate) fn internal(e: impl std::fmt::Display) -> S3Error {
    tracing::error!(error = %e, "s3: internal error");
    s3_error!(InternalError, "We encountered an internal error. Please try again.")
}

pub(crate) fn store_err(e: kumo_store::StoreError) -> S3Error {
    internal(e)
}

/// Maps a data backend error.
pub(crate) fn data_err(e: kumo_objects::Error) -> S3Error {
    match e {
        kumo_objects::Error::TooLarge(n) => S3Error::with_message(
            S3ErrorCode::EntityTooLarge,
            format!("Your proposed upload exceeds the maximum allowed size of {n} bytes."),
        ),
        kumo_objects::Error::Body(e) => {
            S3Error::with_message(S3ErrorCode::IncompleteBody, format!("reading the request body failed: {e}"))
        }
        e => internal(e),
    }
}

pub(crate) fn etag(value: &str) -> ETag {
    ETag::Strong(value.to_string())
}

pub(crate) fn timestamp(t: chrono::DateTime<chrono::Utc>) -> Timestamp {
    Timestamp::from(std::time::SystemTime::from(t))
}

fn unix(t: Timestamp) -> i64 {
    time::OffsetDateTime::from(t).unix_timestamp()
}

/// Maps an error of the REST API's bucket functions (`app::buckets`), which the S3 bucket
/// operations call.
fn bucket_app_err(e: kumo_control::error::ApiError) -> S3Error {
    match e.code {
        kumo_types::ErrorCode::Forbidden => S3Error::with_message(S3ErrorCode::AccessDenied, e.message),
        kumo_types::ErrorCode::NotFound => s3_error!(NoSuchBucket),
        _ => internal(e.internal.unwrap_or(e.message)),
    }
}

fn precondition_failed() -> S3Error {
    s3_error!(PreconditionFailed, "At least one of the pre-conditions you specified did not hold")
}

fn condition_matches(c: &ETagCondition, etag: &str) -> bool {
    match c {
        ETagCondition::Any => true,
        ETagCondition::ETag(e) => e.value() == etag,
    }
}

/// Parses an S3 `UploadId`.
pub(crate) fn upload_id(s: &str) -> S3Result<kumo_types::UploadId> {
    uuid::Uuid::parse_str(s).map(Into::into).map_err(|_| s3_error!(NoSuchUpload))
}

/// 403 `QuotaExceeded`, naming the limit (the message of the quota check).
fn quota_exceeded(message: String) -> S3Error {
    let mut e = S3Error::with_message(S3ErrorCode::Custom("QuotaExceeded".into()), message);
    e.set_status_code(axum::http::StatusCode::FORBIDDEN);
    e
}

fn quota_err(e: kumo_control::error::ApiError) -> S3Error {
    if e.code == kumo_types::ErrorCode::QuotaExceeded {
        quota_exceeded(e.message)
    } else {
        internal(e.internal.unwrap_or(e.message))
    }
}

fn amounts(objects: i64, bytes: i64) -> kumo_store::quotas::QuotaAmounts {
    kumo_store::quotas::QuotaAmounts { objects, object_bytes: bytes, ..Default::default() }
}

impl KumoS3 {
    pub fn new(app: Arc<App>) -> KumoS3 {
        KumoS3 { app }
    }

    /// The identity of a signed request (None: anonymous).
    pub(crate) async fn identity(&self, creds: &Option<Credentials>) -> S3Result<Option<S3Identity>> {
        let Some(c) = creds else { return Ok(None) };
        match access_keys::resolve(&self.app, &c.access_key).await {
            Ok(Some(id)) => Ok(Some(id)),
            Ok(None) => Err(s3_error!(InvalidAccessKeyId)),
            Err(e) => Err(internal(e.internal.unwrap_or(e.message))),
        }
    }

    /// The identity of a signed request; anonymous callers are refused.
    pub(crate) async fn signed(&self, creds: &Option<Credentials>) -> S3Result<S3Identity> {
        self.identity(creds).await?.ok_or_else(|| s3_error!(AccessDenied, "Anonymous users cannot do this."))
    }

    /// The bucket `name`, if the caller may act on it with `access`: a key of the bucket's project
    /// whose user's role there allows it, or anyone reading a public-read bucket. Another
    /// project's bucket, and any bucket an anonymous caller may not read, is `AccessDenied`
    /// whether or not it exists.
    ///
    /// The request is counted (billed to the bucket's project, as S3 bills the bucket owner) once
    /// authorised: a refused request is not.
    pub(crate) async fn bucket(&self, creds: &Option<Credentials>, name: &str, access: Access) -> S3Result<Authorised> {
        let a = self.authorise(creds, name, access).await?;
        let class = if access == Access::Read { RequestClass::Read } else { RequestClass::Write };
        self.app.requests.count(a.bucket.id, class);
        Ok(a)
    }

    /// [`KumoS3::bucket`] without counting a request (the source of a copy: the copy is one).
    async fn authorise(&self, creds: &Option<Credentials>, name: &str, access: Access) -> S3Result<Authorised> {
        let who = self.identity(creds).await?;
        let bucket = {
            let mut conn = self.app.store.read().await.map_err(store_err)?;
            kumo_store::objects::bucket_by_name(&mut conn, name).await.map_err(store_err)?
        };
        let denied = || s3_error!(AccessDenied, "Access Denied");
        match (bucket, who) {
            (None, Some(_)) => Err(s3_error!(NoSuchBucket, "The specified bucket does not exist")),
            (None, None) => Err(denied()),
            (Some(b), None) => {
                if b.public_read && access == Access::Read {
                    Ok(Authorised { bucket: b, who: None })
                } else {
                    Err(denied())
                }
            }
            (Some(b), Some(w)) => {
                if w.project_id != b.project_id {
                    if b.public_read && access == Access::Read {
                        return Ok(Authorised { bucket: b, who: Some(w.ctx) });
                    }
                    return Err(denied());
                }
                w.ctx
                    .authorize_project(b.project_id, &b.project_name, access)
                    .map_err(|e| S3Error::with_message(S3ErrorCode::AccessDenied, e.message))?;
                Ok(Authorised { bucket: b, who: Some(w.ctx) })
            }
        }
    }

    /// A version of a key to read: the current object (None), or the version named, which must
    /// not be a delete marker (S3: 405 MethodNotAllowed).
    pub(crate) async fn object_at(&self, bucket: &Bucket, key: &str, version: Option<&str>) -> S3Result<Object> {
        let version = version_arg(version)?;
        let mut conn = self.app.store.read().await.map_err(store_err)?;
        let found = match version {
            None => kumo_store::objects::object_get(&mut conn, bucket.id, key).await,
            Some(v) => kumo_store::objects::object_version(&mut conn, bucket.id, key, v).await,
        }
        .map_err(store_err)?;
        match (found, version) {
            (Some(o), _) if !o.delete_marker => Ok(o),
            // A delete marker: S3 says so in headers beside the error.
            (Some(marker), asked) => {
                let mut e = if asked.is_some() {
                    s3_error!(MethodNotAllowed, "The specified method is not allowed against this resource.")
                } else {
                    s3_error!(NoSuchKey, "The specified key does not exist.")
                };
                let mut h = axum::http::HeaderMap::new();
                h.insert("x-amz-delete-marker", axum::http::HeaderValue::from_static("true"));
                if let Ok(v) = axum::http::HeaderValue::from_str(&marker.version_id) {
                    h.insert("x-amz-version-id", v);
                }
                e.set_headers(h);
                Err(e)
            }
            (None, None) => Err(s3_error!(NoSuchKey, "The specified key does not exist.")),
            (None, Some(_)) => Err(s3_error!(NoSuchVersion, "The specified version does not exist.")),
        }
    }

    /// The source of a copy (`CopyObject`, `UploadPartCopy`): an object the caller may read, in a
    /// bucket of the destination's project, whose `x-amz-copy-source-if-*` conditions hold.
    pub(crate) async fn copy_source(
        &self,
        creds: &Option<Credentials>,
        dest: &Authorised,
        source: &CopySource,
        (if_match, if_none_match, if_modified_since, if_unmodified_since): (
            &Option<ETagCondition>,
            &Option<ETagCondition>,
            Option<Timestamp>,
            Option<Timestamp>,
        ),
    ) -> S3Result<(Bucket, Object)> {
        let CopySource::Bucket { bucket, key, version_id } = source else {
            return Err(s3_error!(NotImplemented, "copying from an access point is not supported"));
        };
        let src = self.authorise(creds, bucket, Access::Read).await?;
        if src.bucket.project_id != dest.bucket.project_id {
            return Err(s3_error!(AccessDenied, "copies are between buckets of one project"));
        }
        let o = self.object_at(&src.bucket, key, version_id.as_deref()).await?;
        check_conditions(&o, if_match, if_none_match, if_modified_since, if_unmodified_since)?;
        Ok((src.bucket, o))
    }

    /// Charges `objects` and `bytes` (released when negative) to the project's object storage
    /// quota in the transaction that commits the change, or fails with `QuotaExceeded`.
    pub(crate) async fn charge(
        &self,
        tx: &mut kumo_store::Conn,
        a: &Authorised,
        objects: i64,
        bytes: i64,
    ) -> S3Result<()> {
        kumo_control::app::quotas::charge(tx, a.bucket.project_id, &a.bucket.project_name, amounts(objects, bytes))
            .await
            .map_err(quota_err)?;
        // And the bucket's stored bytes, which metering bills.
        let cause = a.cause("s3_write");
        kumo_control::app::buckets::account(tx, a.bucket.project_id, (a.bucket.id, &a.bucket.name), bytes, &cause)
            .await
            .map_err(|e| internal(e.internal.unwrap_or(e.message)))
    }

    /// Refuses early, before any byte is written, what would exceed the quota now (the charge at
    /// the commit decides).
    pub(crate) async fn precheck(&self, a: &Authorised, objects: i64, bytes: i64) -> S3Result<()> {
        let mut conn = self.app.store.read().await.map_err(store_err)?;
        kumo_control::app::quotas::precheck(
            &mut conn,
            a.bucket.project_id,
            &a.bucket.project_name,
            amounts(objects, bytes),
        )
        .await
        .map_err(quota_err)
    }

    /// Records an audit event of the bucket's project.
    pub(crate) async fn audit(
        &self,
        tx: &mut kumo_store::Tx,
        a: &Authorised,
        (resource_type, id, name): (&str, uuid::Uuid, &str),
        kind: &str,
        op: &str,
    ) -> S3Result<kumo_types::EventView> {
        let cause = a.cause(op);
        let ev = kumo_control::app::vpcs::event(a.bucket.project_id, resource_type, id, name, kind, &cause);
        kumo_store::events::record(tx, &ev).await.map_err(store_err)
    }

    /// Changes a bucket through the REST API's decision (`app::buckets::update`: who may change
    /// what, one audit entry per change).
    pub(crate) async fn update_bucket(&self, a: &Authorised, u: kumo_types::BucketUpdate) -> S3Result<()> {
        let who = a.who.as_ref().ok_or_else(|| s3_error!(AccessDenied))?;
        kumo_control::app::buckets::update(&self.app, who, Some(&a.bucket.project_name), &a.bucket.name, &u)
            .await
            .map(|_| ())
            .map_err(bucket_app_err)
    }

    pub(crate) fn publish(&self, a: &Authorised, ev: kumo_types::EventView) {
        self.app.events.publish(Some(a.bucket.project_id), Some(&a.bucket.project_name), ev);
    }

    /// Writes a body as a new blob, checks the checksums the request promised, and gives the blob
    /// (durable, not yet named by any row) with the verified checksums.
    pub(crate) async fn write_body(
        &self,
        body: Option<StreamingBlob>,
        headers: &axum::http::HeaderMap,
        trailers: Option<s3s::TrailingHeaders>,
        seq: i64,
    ) -> S3Result<(Blob, BTreeMap<String, String>)> {
        let expected = Expected::from_headers(headers)?;
        let body = body
            .unwrap_or_else(|| StreamingBlob::wrap(futures::stream::empty::<Result<bytes::Bytes, std::io::Error>>()));
        let (stream, hashing) = hashing(body, &expected);
        let id: BlobId = kumo_store::new_id();
        let w = self.app.objects.write(id.get(), stream, MAX_PUT_BYTES).await.map_err(data_err)?;
        match hashing.verify(&expected, w.md5, trailers.and_then(|t| t.take())) {
            Ok(sums) => Ok((blob_of(id, seq, w), sums)),
            Err(e) => {
                let _ = self.app.objects.remove(id.get()).await;
                Err(e)
            }
        }
    }

    /// The bytes `range` of an object, blob after blob (each read whole is verified).
    pub(crate) async fn read_range(&self, o: &Object, range: std::ops::Range<u64>) -> S3Result<ByteStream> {
        let mut segments = Vec::new();
        let mut offset = 0u64;
        for b in &o.blobs {
            let (start, end) = (offset, offset + b.size);
            offset = end;
            let s = range.start.max(start);
            let e = range.end.min(end);
            if s >= e {
                continue;
            }
            let check = kumo_objects::Check {
                crc32c: Some(b.crc32c),
                blocks: (!b.blocks.is_empty()).then(|| b.blocks.clone().into()),
            };
            segments.push((b.id, (s - start)..(e - start), check));
        }
        let data = self.app.objects.clone();
        let stream = futures::stream::iter(segments)
            .then(move |(id, r, check)| {
                let data = data.clone();
                async move { data.read(id.get(), r, check).await.map_err(|e| std::io::Error::other(e.to_string())) }
            })
            .try_flatten();
        Ok(Box::pin(stream))
    }

    /// Commits a written blob as the latest version of `key`: charged to the quota, audited.
    /// `only_if_absent` (`If-None-Match: *`): refused with `PreconditionFailed` if the key has a
    /// current object at the commit, whoever wrote it meanwhile. The blob goes when nothing names it.
    pub(crate) async fn put(
        &self,
        a: &Authorised,
        key: &str,
        (headers, only_if_absent): (StoredHeaders, bool),
        blob: Blob,
        sums: BTreeMap<String, String>,
    ) -> S3Result<Stored> {
        let etag = blob.md5.clone();
        let mut tx = self.app.store.begin().await.map_err(store_err)?;
        let new = NewObject {
            bucket_id: a.bucket.id,
            key,
            size: blob.size,
            etag: &etag,
            headers: &headers.to_json(),
            checksums: &serde_json::to_string(&sums).unwrap_or_else(|_| "{}".into()),
            only_if_absent,
        };
        let written = match kumo_store::objects::object_put(&mut tx, &new, a.bucket.versioning, &blob).await {
            Ok(w) => self.charge_written(&mut tx, a, &w, blob.size, 0).await.map(|()| w),
            Err(kumo_store::StoreError::Conflict(_)) => Err(precondition_failed()),
            Err(e) => Err(store_err(e)),
        };
        let w = match written {
            Ok(w) => w,
            Err(e) => {
                drop(tx);
                let _ = self.app.objects.remove(blob.id.get()).await;
                return Err(e);
            }
        };
        let ev = self
            .audit(&mut tx, a, ("object", w.id.get(), &format!("{}/{key}", a.bucket.name)), "put", "s3_put_object")
            .await?;
        tx.commit().await.map_err(|e| store_err(e.into()))?;
        self.publish(a, ev);
        Ok(Stored { etag, version_id: version_shown(&a.bucket, &w.version_id) })
    }

    /// Charges a new version of `size` bytes (`charged`: its bytes already charged, as an
    /// upload's parts are), releasing what it replaced for good.
    pub(crate) async fn charge_written(
        &self,
        tx: &mut kumo_store::Conn,
        a: &Authorised,
        w: &Written,
        size: u64,
        charged: u64,
    ) -> S3Result<()> {
        let objects = 1 - w.freed.objects as i64;
        let bytes = size as i64 - charged as i64 - w.freed.bytes as i64;
        self.charge(tx, a, objects, bytes).await
    }
}

/// The blob row of a blob written (`seq`: its place in the object, or its part number).
pub(crate) fn blob_of(id: BlobId, seq: i64, w: kumo_objects::Written) -> Blob {
    Blob { id, seq, size: w.size, md5: hex::encode(w.md5), crc32c: w.crc32c, blocks: w.blocks }
}

/// What a write made: the ETag and, in a bucket with versioning, the version id.
pub(crate) struct Stored {
    pub etag: String,
    pub version_id: Option<String>,
}

/// The version id a response names: none in a bucket that never had versioning (S3 sends no
/// `x-amz-version-id` there), else the version's (`null` included).
pub(crate) fn version_shown(bucket: &Bucket, version_id: &str) -> Option<String> {
    (bucket.versioning != Versioning::Unversioned || version_id != NULL_VERSION).then(|| version_id.to_string())
}

/// Checks a request's version id: `null` or one this endpoint gives (32 hex digits).
pub(crate) fn version_arg(v: Option<&str>) -> S3Result<Option<&str>> {
    match v {
        None => Ok(None),
        Some(v) if v == NULL_VERSION || (v.len() == 32 && v.bytes().all(|b| b.is_ascii_hexdigit())) => Ok(Some(v)),
        Some(_) => Err(s3_error!(InvalidArgument, "Invalid version id specified")),
    }
}

fn checksum_fields(sums: &BTreeMap<String, String>) -> Checksum {
    let g = |n: &str| sums.get(n).cloned();
    Checksum {
        checksum_crc32: g("crc32"),
        checksum_crc32c: g("crc32c"),
        checksum_crc64nvme: g("crc64nvme"),
        checksum_sha1: g("sha1"),
        checksum_sha256: g("sha256"),
        ..Default::default()
    }
}

#[async_trait::async_trait]
impl S3 for KumoS3 {
    async fn list_buckets(&self, req: S3Request<ListBucketsInput>) -> S3Result<S3Response<ListBucketsOutput>> {
        let who = self.signed(&req.credentials).await?;
        who.ctx
            .authorize_project(who.project_id, &who.project_name, Access::Read)
            .map_err(|e| S3Error::with_message(S3ErrorCode::AccessDenied, e.message))?;
        let mut conn = self.app.store.read().await.map_err(store_err)?;
        let buckets = kumo_store::objects::buckets_of_project(&mut conn, who.project_id).await.map_err(store_err)?;
        let buckets = buckets
            .into_iter()
            .map(|b| s3s::dto::Bucket {
                name: Some(b.name),
                creation_date: Some(timestamp(b.time_created)),
                bucket_region: Some("us-east-1".into()),
            })
            .collect();
        Ok(S3Response::new(ListBucketsOutput {
            buckets: Some(buckets),
            owner: Some(Owner { display_name: Some(who.project_name.clone()), id: Some(who.project_id.to_string()) }),
            ..Default::default()
        }))
    }

    async fn create_bucket(&self, req: S3Request<CreateBucketInput>) -> S3Result<S3Response<CreateBucketOutput>> {
        let who = self.signed(&req.credentials).await?;
        let input = req.input;
        if let Some(c) = input.create_bucket_configuration.as_ref().and_then(|c| c.location_constraint.as_ref()) {
            if !c.as_str().is_empty() && c.as_str() != "us-east-1" {
                return Err(s3_error!(
                    InvalidLocationConstraint,
                    "The specified location-constraint is not valid: this endpoint has one region, us-east-1."
                ));
            }
        }
        let public_read = match input.acl.as_ref().map(|a| a.as_str()) {
            None | Some("private") => false,
            Some("public-read") => true,
            Some(other) => {
                return Err(s3_error!(
                    InvalidArgument,
                    "canned ACL '{other}' is not supported: use private or public-read"
                ))
            }
        };
        {
            let mut conn = self.app.store.read().await.map_err(store_err)?;
            if let Some(b) = kumo_store::objects::bucket_by_name(&mut conn, &input.bucket).await.map_err(store_err)? {
                return Err(if b.project_id == who.project_id {
                    s3_error!(
                        BucketAlreadyOwnedByYou,
                        "Your previous request to create the named bucket succeeded and you already own it."
                    )
                } else {
                    s3_error!(BucketAlreadyExists, "The requested bucket name is not available. The bucket namespace is shared by all users of the system. Please select a different name and try again.")
                });
            }
        }
        // The REST API's create (kumo_control::app::buckets::create): the same checks, audited.
        let c = kumo_types::BucketCreate { name: input.bucket.clone(), public_read };
        kumo_control::app::buckets::create(&self.app, &who.ctx, Some(&who.project_name), &c).await.map_err(
            |e| match e.code {
                kumo_types::ErrorCode::Forbidden => S3Error::with_message(S3ErrorCode::AccessDenied, e.message),
                kumo_types::ErrorCode::ObjectAlreadyExists => s3_error!(BucketAlreadyExists),
                kumo_types::ErrorCode::InvalidValue => S3Error::with_message(S3ErrorCode::InvalidBucketName, e.message),
                _ => internal(e.internal.unwrap_or(e.message)),
            },
        )?;
        Ok(S3Response::new(CreateBucketOutput { location: Some(format!("/{}", input.bucket)) }))
    }

    async fn head_bucket(&self, req: S3Request<HeadBucketInput>) -> S3Result<S3Response<HeadBucketOutput>> {
        self.bucket(&req.credentials, &req.input.bucket, Access::Read).await?;
        Ok(S3Response::new(HeadBucketOutput { bucket_region: Some("us-east-1".into()), ..Default::default() }))
    }

    async fn get_bucket_location(
        &self,
        req: S3Request<GetBucketLocationInput>,
    ) -> S3Result<S3Response<GetBucketLocationOutput>> {
        self.bucket(&req.credentials, &req.input.bucket, Access::Read).await?;
        // us-east-1 is the empty location constraint.
        Ok(S3Response::new(GetBucketLocationOutput { location_constraint: None }))
    }

    async fn delete_bucket(&self, req: S3Request<DeleteBucketInput>) -> S3Result<S3Response<DeleteBucketOutput>> {
        let a = self.bucket(&req.credentials, &req.input.bucket, Access::Write).await?;
        let who = a.who.as_ref().ok_or_else(|| s3_error!(AccessDenied))?;
        kumo_control::app::buckets::delete(&self.app, who, Some(&a.bucket.project_name), &a.bucket.name)
            .await
            .map_err(|e| match e.code {
                kumo_types::ErrorCode::InvalidState => {
                    s3_error!(BucketNotEmpty, "The bucket you tried to delete is not empty")
                }
                _ => bucket_app_err(e),
            })?;
        Ok(S3Response::new(DeleteBucketOutput {}))
    }

    async fn get_bucket_acl(&self, req: S3Request<GetBucketAclInput>) -> S3Result<S3Response<GetBucketAclOutput>> {
        let a = self.bucket(&req.credentials, &req.input.bucket, Access::Read).await?;
        let owner =
            Owner { display_name: Some(a.bucket.project_name.clone()), id: Some(a.bucket.project_id.to_string()) };
        let mut grants = vec![Grant {
            grantee: Some(Grantee {
                type_: Type::from_static(Type::CANONICAL_USER),
                display_name: owner.display_name.clone(),
                id: owner.id.clone(),
                email_address: None,
                uri: None,
            }),
            permission: Some(Permission::from_static(Permission::FULL_CONTROL)),
        }];
        if a.bucket.public_read {
            grants.push(Grant {
                grantee: Some(Grantee {
                    type_: Type::from_static(Type::GROUP),
                    display_name: None,
                    id: None,
                    email_address: None,
                    uri: Some("http://acs.amazonaws.com/groups/global/AllUsers".into()),
                }),
                permission: Some(Permission::from_static(Permission::READ)),
            });
        }
        Ok(S3Response::new(GetBucketAclOutput { grants: Some(grants), owner: Some(owner) }))
    }

    async fn put_bucket_acl(&self, req: S3Request<PutBucketAclInput>) -> S3Result<S3Response<PutBucketAclOutput>> {
        let a = self.bucket(&req.credentials, &req.input.bucket, Access::Read).await?;
        let public_read = match req.input.acl.as_ref().map(|a| a.as_str()) {
            Some("private") => false,
            Some("public-read") => true,
            _ => return Err(s3_error!(NotImplemented, "only the canned ACLs private and public-read are supported")),
        };
        let who = a.who.as_ref().ok_or_else(|| s3_error!(AccessDenied))?;
        // A key of another project reads a public-read bucket, never changes it.
        who.authorize_project(a.bucket.project_id, &a.bucket.project_name, Access::Write)
            .map_err(|_| s3_error!(AccessDenied, "Access Denied"))?;
        self.update_bucket(&a, kumo_types::BucketUpdate { public_read: Some(public_read), ..Default::default() })
            .await?;
        Ok(S3Response::new(PutBucketAclOutput::default()))
    }

    async fn put_bucket_lifecycle_configuration(
        &self,
        req: S3Request<PutBucketLifecycleConfigurationInput>,
    ) -> S3Result<S3Response<PutBucketLifecycleConfigurationOutput>> {
        let a = self.bucket(&req.credentials, &req.input.bucket, Access::Write).await?;
        let config =
            req.input.lifecycle_configuration.ok_or_else(|| s3_error!(MalformedXML, "no LifecycleConfiguration"))?;
        let rules = crate::lifecycle::from_s3(&config.rules)?;
        let mut tx = self.app.store.begin().await.map_err(store_err)?;
        kumo_store::objects::bucket_set_lifecycle(&mut tx, a.bucket.id, Some(&rules)).await.map_err(store_err)?;
        let ev = self
            .audit(
                &mut tx,
                &a,
                ("bucket", a.bucket.id.get(), &a.bucket.name),
                "lifecycle set",
                "s3_put_bucket_lifecycle",
            )
            .await?;
        tx.commit().await.map_err(|e| store_err(e.into()))?;
        self.publish(&a, ev);
        Ok(S3Response::new(PutBucketLifecycleConfigurationOutput::default()))
    }

    async fn get_bucket_lifecycle_configuration(
        &self,
        req: S3Request<GetBucketLifecycleConfigurationInput>,
    ) -> S3Result<S3Response<GetBucketLifecycleConfigurationOutput>> {
        let a = self.bucket(&req.credentials, &req.input.bucket, Access::Read).await?;
        let mut conn = self.app.store.read().await.map_err(store_err)?;
        let rules = kumo_store::objects::bucket_lifecycle(&mut conn, a.bucket.id)
            .await
            .map_err(store_err)?
            .ok_or_else(|| s3_error!(NoSuchLifecycleConfiguration, "The lifecycle configuration does not exist"))?;
        Ok(S3Response::new(GetBucketLifecycleConfigurationOutput {
            rules: Some(crate::lifecycle::to_s3(&rules)),
            ..Default::default()
        }))
    }

    async fn delete_bucket_lifecycle(
        &self,
        req: S3Request<DeleteBucketLifecycleInput>,
    ) -> S3Result<S3Response<DeleteBucketLifecycleOutput>> {
        let a = self.bucket(&req.credentials, &req.input.bucket, Access::Write).await?;
        let mut tx = self.app.store.begin().await.map_err(store_err)?;
        kumo_store::objects::bucket_set_lifecycle(&mut tx, a.bucket.id, None).await.map_err(store_err)?;
        let ev = self
            .audit(
                &mut tx,
                &a,
                ("bucket", a.bucket.id.get(), &a.bucket.name),
                "lifecycle removed",
                "s3_delete_bucket_lifecycle",
            )
            .await?;
        tx.commit().await.map_err(|e| store_err(e.into()))?;
        self.publish(&a, ev);
        Ok(S3Response::new(DeleteBucketLifecycleOutput::default()))
    }

    async fn put_object(&self, req: S3Request<PutObjectInput>) -> S3Result<S3Response<PutObjectOutput>> {
        let a = self.bucket(&req.credentials, &req.input.bucket, Access::Write).await?;
        let mut input = req.input;
        if let Some(cond) = &input.if_none_match {
            let mut conn = self.app.store.read().await.map_err(store_err)?;
            if let Some(o) =
                kumo_store::objects::object_get(&mut conn, a.bucket.id, &input.key).await.map_err(store_err)?
            {
                if condition_matches(cond, &o.etag) {
                    return Err(s3_error!(
                        PreconditionFailed,
                        "At least one of the pre-conditions you specified did not hold"
                    ));
                }
            }
        }
        let headers = StoredHeaders {
            content_type: input.content_type.take().map(|c| c.to_string()),
            content_encoding: input.content_encoding.take(),
            content_disposition: input.content_disposition.take(),
            content_language: input.content_language.take(),
            cache_control: input.cache_control.take(),
            meta: input.metadata.take().unwrap_or_default().into_iter().collect(),
        };
        self.precheck(&a, 0, input.content_length.unwrap_or(0)).await?;
        let (blob, sums) = self.write_body(input.body.take(), &req.headers, req.trailing_headers, 0).await?;
        let size = blob.size;
        let only_if_absent = matches!(input.if_none_match, Some(ETagCondition::Any));
        let stored = self.put(&a, &input.key, (headers, only_if_absent), blob, sums.clone()).await?;
        let c = checksum_fields(&sums);
        Ok(S3Response::new(PutObjectOutput {
            e_tag: Some(etag(&stored.etag)),
            version_id: stored.version_id,
            size: Some(size as i64),
            checksum_crc32: c.checksum_crc32,
            checksum_crc32c: c.checksum_crc32c,
            checksum_crc64nvme: c.checksum_crc64nvme,
            checksum_sha1: c.checksum_sha1,
            checksum_sha256: c.checksum_sha256,
            ..Default::default()
        }))
    }

    async fn get_object(&self, req: S3Request<GetObjectInput>) -> S3Result<S3Response<GetObjectOutput>> {
        let a = self.bucket(&req.credentials, &req.input.bucket, Access::Read).await?;
        let input = req.input;
        let o = self.object_at(&a.bucket, &input.key, input.version_id.as_deref()).await?;
        check_conditions(
            &o,
            &input.if_match,
            &input.if_none_match,
            input.if_modified_since,
            input.if_unmodified_since,
        )?;
        let (range, content_range) = match &input.range {
            None => (0..o.size, None),
            Some(r) => {
                let r =
                    r.check(o.size).map_err(|_| s3_error!(InvalidRange, "The requested range is not satisfiable"))?;
                let cr = format!("bytes {}-{}/{}", r.start, r.end - 1, o.size);
                (r, Some(cr))
            }
        };
        let len = range.end - range.start;
        let body = self.read_range(&o, range).await?;
        let h = StoredHeaders::from_json(&o.headers);
        let sums: BTreeMap<String, String> = serde_json::from_str(&o.checksums).unwrap_or_default();
        // Checksums of the whole object, only when asked for and the whole object is sent.
        let c = if input.checksum_mode.as_ref().is_some_and(|m| m.as_str() == "ENABLED") && content_range.is_none() {
            checksum_fields(&sums)
        } else {
            Checksum::default()
        };
        Ok(S3Response::new(GetObjectOutput {
            body: Some(StreamingBlob::wrap(sync_wrapper::SyncStream::new(body))),
            content_length: Some(len as i64),
            content_range,
            accept_ranges: Some("bytes".into()),
            e_tag: Some(etag(&o.etag)),
            last_modified: Some(timestamp(o.time_modified)),
            content_type: input.response_content_type.or(h.content_type.clone()).and_then(|c| c.parse().ok()),
            content_encoding: input.response_content_encoding.or(h.content_encoding.clone()),
            content_disposition: input.response_content_disposition.or(h.content_disposition.clone()),
            content_language: input.response_content_language.or(h.content_language.clone()),
            cache_control: input.response_cache_control.or(h.cache_control.clone()),
            metadata: h.metadata(),
            parts_count: (o.blobs.len() > 1).then_some(o.blobs.len() as i32),
            version_id: version_shown(&a.bucket, &o.version_id),
            checksum_crc32: c.checksum_crc32,
            checksum_crc32c: c.checksum_crc32c,
            checksum_crc64nvme: c.checksum_crc64nvme,
            checksum_sha1: c.checksum_sha1,
            checksum_sha256: c.checksum_sha256,
            ..Default::default()
        }))
    }

    async fn head_object(&self, req: S3Request<HeadObjectInput>) -> S3Result<S3Response<HeadObjectOutput>> {
        let a = self.bucket(&req.credentials, &req.input.bucket, Access::Read).await?;
        let input = req.input;
        let o = self.object_at(&a.bucket, &input.key, input.version_id.as_deref()).await?;
        check_conditions(
            &o,
            &input.if_match,
            &input.if_none_match,
            input.if_modified_since,
            input.if_unmodified_since,
        )?;
        let h = StoredHeaders::from_json(&o.headers);
        let sums: BTreeMap<String, String> = serde_json::from_str(&o.checksums).unwrap_or_default();
        let c = if input.checksum_mode.as_ref().is_some_and(|m| m.as_str() == "ENABLED") {
            checksum_fields(&sums)
        } else {
            Checksum::default()
        };
        Ok(S3Response::new(HeadObjectOutput {
            content_length: Some(o.size as i64),
            accept_ranges: Some("bytes".into()),
            e_tag: Some(etag(&o.etag)),
            last_modified: Some(timestamp(o.time_modified)),
            content_type: h.content_type.clone().and_then(|c| c.parse().ok()),
            content_encoding: h.content_encoding.clone(),
            content_disposition: h.content_disposition.clone(),
            content_language: h.content_language.clone(),
            cache_control: h.cache_control.clone(),
            metadata: h.metadata(),
            parts_count: (o.blobs.len() > 1).then_some(o.blobs.len() as i32),
            version_id: version_shown(&a.bucket, &o.version_id),
            checksum_crc32: c.checksum_crc32,
            checksum_crc32c: c.checksum_crc32c,
            checksum_crc64nvme: c.checksum_crc64nvme,
            checksum_sha1: c.checksum_sha1,
            checksum_sha256: c.checksum_sha256,
            ..Default::default()
        }))
    }

    async fn delete_object(&self, req: S3Request<DeleteObjectInput>) -> S3Result<S3Response<DeleteObjectOutput>> {
        let a = self.bucket(&req.credentials, &req.input.bucket, Access::Write).await?;
        let d = self.delete_key(&a, &req.input.key, req.input.version_id.as_deref()).await?;
        // Deleting a key or a version that does not exist succeeds, as in S3.
        Ok(S3Response::new(DeleteObjectOutput {
            delete_marker: d.delete_marker.then_some(true),
            version_id: d.version_id,
            ..Default::default()
        }))
    }

    async fn delete_objects(&self, req: S3Request<DeleteObjectsInput>) -> S3Result<S3Response<DeleteObjectsOutput>> {
        let a = self.bucket(&req.credentials, &req.input.bucket, Access::Write).await?;
        if req.input.delete.objects.len() > 1000 {
            return Err(s3_error!(MalformedXML, "a DeleteObjects request names at most 1,000 keys"));
        }
        let quiet = req.input.delete.quiet.unwrap_or(false);
        let mut deleted = Vec::new();
        let mut errors = Vec::new();
        for o in &req.input.delete.objects {
            match self.delete_key(&a, &o.key, o.version_id.as_deref()).await {
                Ok(d) if !quiet => deleted.push(DeletedObject {
                    key: Some(o.key.clone()),
                    delete_marker: d.delete_marker.then_some(true),
                    // A marker made: its id; a version removed: the one asked for.
                    delete_marker_version_id: if o.version_id.is_none() { d.version_id.clone() } else { None },
                    version_id: if o.version_id.is_some() { d.version_id } else { None },
                }),
                Ok(_) => {}
                Err(e) => errors.push(s3s::dto::Error {
                    code: Some(e.code().as_str().to_string()),
                    key: Some(o.key.clone()),
                    message: e.message().map(str::to_string),
                    version_id: o.version_id.clone(),
                }),
            }
        }
        Ok(S3Response::new(DeleteObjectsOutput { deleted: Some(deleted), errors: Some(errors), ..Default::default() }))
    }

    async fn copy_object(&self, req: S3Request<CopyObjectInput>) -> S3Result<S3Response<CopyObjectOutput>> {
        let a = self.bucket(&req.credentials, &req.input.bucket, Access::Write).await?;
        let input = req.input;
        let conditions = (
            &input.copy_source_if_match,
            &input.copy_source_if_none_match,
            input.copy_source_if_modified_since,
            input.copy_source_if_unmodified_since,
        );
        let (src, o) = self.copy_source(&req.credentials, &a, &input.copy_source, conditions).await?;
        let src_key = &o.key;
        let replace = input.metadata_directive.as_ref().is_some_and(|d| d.as_str() == "REPLACE");
        let same_version = o.is_latest;
        if !replace && src.id == a.bucket.id && *src_key == input.key && same_version {
            return Err(s3_error!(InvalidRequest, "This copy request is illegal because it is trying to copy an object to itself without changing the object's metadata, storage class, website redirect location or encryption attributes."));
        }
        let headers = if replace {
            StoredHeaders {
                content_type: input.content_type.map(|c| c.to_string()),
                content_encoding: input.content_encoding,
                content_disposition: input.content_disposition,
                content_language: input.content_language,
                cache_control: input.cache_control,
                meta: input.metadata.unwrap_or_default().into_iter().collect(),
            }
        } else {
            StoredHeaders::from_json(&o.headers)
        };
        self.precheck(&a, 0, o.size as i64).await?;
        // The bytes are copied into one new blob (the source may be deleted meanwhile).
        let body = self.read_range(&o, 0..o.size).await?;
        let id: BlobId = kumo_store::new_id();
        let w = self.app.objects.write(id.get(), body, u64::MAX).await.map_err(data_err)?;
        let blob = blob_of(id, 0, w);
        let sums: BTreeMap<String, String> =
            if o.blobs.len() == 1 { serde_json::from_str(&o.checksums).unwrap_or_default() } else { BTreeMap::new() };
        let stored = self.put(&a, &input.key, (headers, false), blob, sums).await?;
        Ok(S3Response::new(CopyObjectOutput {
            copy_object_result: Some(CopyObjectResult {
                e_tag: Some(etag(&stored.etag)),
                last_modified: Some(timestamp(chrono::Utc::now())),
                ..Default::default()
            }),
            copy_source_version_id: version_shown(&src, &o.version_id),
            version_id: stored.version_id,
            ..Default::default()
        }))
    }

    async fn get_bucket_versioning(
        &self,
        req: S3Request<GetBucketVersioningInput>,
    ) -> S3Result<S3Response<GetBucketVersioningOutput>> {
        crate::versions::get_versioning(self, req).await
    }

    async fn put_bucket_versioning(
        &self,
        req: S3Request<PutBucketVersioningInput>,
    ) -> S3Result<S3Response<PutBucketVersioningOutput>> {
        crate::versions::put_versioning(self, req).await
    }

    async fn list_object_versions(
        &self,
        req: S3Request<ListObjectVersionsInput>,
    ) -> S3Result<S3Response<ListObjectVersionsOutput>> {
        crate::versions::list_versions(self, req).await
    }

    async fn list_objects(&self, req: S3Request<ListObjectsInput>) -> S3Result<S3Response<ListObjectsOutput>> {
        crate::listing::list_objects(self, req).await
    }

    async fn list_objects_v2(&self, req: S3Request<ListObjectsV2Input>) -> S3Result<S3Response<ListObjectsV2Output>> {
        crate::listing::list_objects_v2(self, req).await
    }

    async fn create_multipart_upload(
        &self,
        req: S3Request<CreateMultipartUploadInput>,
    ) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
        crate::multipart::create(self, req).await
    }

    async fn upload_part(&self, req: S3Request<UploadPartInput>) -> S3Result<S3Response<UploadPartOutput>> {
        crate::multipart::upload_part(self, req).await
    }

    async fn upload_part_copy(
        &self,
        req: S3Request<UploadPartCopyInput>,
    ) -> S3Result<S3Response<UploadPartCopyOutput>> {
        crate::multipart::upload_part_copy(self, req).await
    }

    async fn complete_multipart_upload(
        &self,
        req: S3Request<CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
        crate::multipart::complete(self, req).await
    }

    async fn abort_multipart_upload(
        &self,
        req: S3Request<AbortMultipartUploadInput>,
    ) -> S3Result<S3Response<AbortMultipartUploadOutput>> {
        crate::multipart::abort(self, req).await
    }

    async fn list_parts(&self, req: S3Request<ListPartsInput>) -> S3Result<S3Response<ListPartsOutput>> {
        crate::multipart::list_parts(self, req).await
    }

    async fn list_multipart_uploads(
        &self,
        req: S3Request<ListMultipartUploadsInput>,
    ) -> S3Result<S3Response<ListMultipartUploadsOutput>> {
        crate::multipart::list_uploads(self, req).await
    }
}

/// What a delete did: a delete marker made or removed (`delete_marker`), and the version id to
/// name in the response.
pub(crate) struct DeleteOutcome {
    pub delete_marker: bool,
    pub version_id: Option<String>,
}

impl KumoS3 {
    /// Deletes a key (None: as the bucket's versioning says) or one version of it for good.
    pub(crate) async fn delete_key(&self, a: &Authorised, key: &str, version: Option<&str>) -> S3Result<DeleteOutcome> {
        let version = version_arg(version)?;
        let mut tx = self.app.store.begin().await.map_err(store_err)?;
        let name = format!("{}/{key}", a.bucket.name);
        let (id, freed, outcome, kind) = match version {
            None => match kumo_store::objects::object_delete(&mut tx, a.bucket.id, key, a.bucket.versioning)
                .await
                .map_err(store_err)?
            {
                Deleted::Removed(None) => return Ok(DeleteOutcome { delete_marker: false, version_id: None }),
                Deleted::Removed(Some((id, freed))) => {
                    (id, freed, DeleteOutcome { delete_marker: false, version_id: None }, "deleted")
                }
                Deleted::Marker(w) => (
                    w.id,
                    w.freed,
                    DeleteOutcome { delete_marker: true, version_id: Some(w.version_id) },
                    "deleted (a delete marker)",
                ),
            },
            Some(v) => {
                match kumo_store::objects::object_delete_version(&mut tx, a.bucket.id, key, v)
                    .await
                    .map_err(store_err)?
                {
                    None => return Ok(DeleteOutcome { delete_marker: false, version_id: Some(v.to_string()) }),
                    Some((o, freed)) => (
                        o.id,
                        freed,
                        DeleteOutcome { delete_marker: o.delete_marker, version_id: Some(o.version_id) },
                        "version deleted",
                    ),
                }
            }
        };
        self.charge(&mut tx, a, -(freed.objects as i64), -(freed.bytes as i64)).await?;
        let ev = self.audit(&mut tx, a, ("object", id.get(), &name), kind, "s3_delete_object").await?;
        tx.commit().await.map_err(|e| store_err(e.into()))?;
        self.publish(a, ev);
        Ok(outcome)
    }
}

/// `If-Match`, `If-None-Match`, `If-Modified-Since`, `If-Unmodified-Since` (RFC 9110's order).
fn check_conditions(
    o: &Object,
    if_match: &Option<ETagCondition>,
    if_none_match: &Option<ETagCondition>,
    if_modified_since: Option<Timestamp>,
    if_unmodified_since: Option<Timestamp>,
) -> S3Result<()> {
    let failed = || s3_error!(PreconditionFailed, "At least one of the pre-conditions you specified did not hold");
    let modified = o.time_modified.timestamp();
    if let Some(c) = if_match {
        if !condition_matches(c, &o.etag) {
            return Err(failed());
        }
    } else if if_unmodified_since.is_some_and(|t| modified > unix(t)) {
        return Err(failed());
    }
    if let Some(c) = if_none_match {
        if condition_matches(c, &o.etag) {
            return Err(S3Error::new(S3ErrorCode::NotModified));
        }
    } else if if_modified_since.is_some_and(|t| modified <= unix(t)) {
        return Err(S3Error::new(S3ErrorCode::NotModified));
    }
    Ok(())
}
