//! Bucket versioning: its setting (Get/PutBucketVersioning) and ListObjectVersions. What a write
//! or a delete does to a key's versions is decided in one place, `kumo_store::objects`
//! (`insert_version`, `object_delete`, `object_delete_version`).

use crate::listing::{common_prefix, max_keys, past, BATCH};
use crate::service::{etag, store_err, timestamp, KumoS3};
use kumo_control::context::Access;
use kumo_store::objects::Bucket;
use kumo_types::{BucketUpdate, BucketVersioning};
use s3s::dto::*;
use s3s::{s3_error, S3Request, S3Response, S3Result};

pub(crate) async fn get_versioning(
    s3: &KumoS3,
    req: S3Request<GetBucketVersioningInput>,
) -> S3Result<S3Response<GetBucketVersioningOutput>> {
    let a = s3.bucket(&req.credentials, &req.input.bucket, Access::Read).await?;
    Ok(S3Response::new(GetBucketVersioningOutput {
        status: a.bucket.versioning.status().map(BucketVersioningStatus::from_static),
        mfa_delete: None,
    }))
}

pub(crate) async fn put_versioning(
    s3: &KumoS3,
    req: S3Request<PutBucketVersioningInput>,
) -> S3Result<S3Response<PutBucketVersioningOutput>> {
    let a = s3.bucket(&req.credentials, &req.input.bucket, Access::Write).await?;
    let c = req.input.versioning_configuration;
    if c.mfa_delete.as_ref().is_some_and(|m| m.as_str() == "Enabled") {
        return Err(s3_error!(NotImplemented, "MFA delete is not supported"));
    }
    let v = match c.status.as_ref().map(|s| s.as_str()) {
        Some("Enabled") => BucketVersioning::Enabled,
        Some("Suspended") => BucketVersioning::Suspended,
        _ => return Err(s3_error!(MalformedXML, "VersioningConfiguration needs a Status of Enabled or Suspended")),
    };
    s3.update_bucket(&a, BucketUpdate { versioning: Some(v), ..Default::default() }).await?;
    Ok(S3Response::new(PutBucketVersioningOutput {}))
}

/// One page of versions.
struct Page {
    versions: Vec<kumo_store::objects::Object>,
    prefixes: Vec<String>,
    truncated: bool,
    /// The last version or common prefix given: (key-marker, version-id-marker) of the next page.
    last: Option<(String, Option<String>)>,
}

/// Lists up to `max` versions and common prefixes of `bucket` after `marker`.
async fn page(
    s3: &KumoS3,
    bucket: &Bucket,
    prefix: &str,
    delimiter: Option<&str>,
    marker: Option<(String, Option<String>)>,
    max: usize,
) -> S3Result<Page> {
    let mut out = Page { versions: Vec::new(), prefixes: Vec::new(), truncated: false, last: None };
    let after_prefix = marker.as_ref().map(|(k, _)| k.clone());
    let mut cursor = marker;
    let mut conn = s3.app.store.read().await.map_err(store_err)?;
    'fetch: loop {
        let at = cursor.as_ref().map(|(k, v)| (k.as_str(), v.as_deref()));
        let batch =
            kumo_store::objects::version_list(&mut conn, bucket.id, prefix, at, BATCH).await.map_err(store_err)?;
        let full = batch.len() == BATCH;
        for o in batch {
            if out.versions.len() + out.prefixes.len() == max {
                out.truncated = true;
                break 'fetch;
            }
            match common_prefix(&o.key, prefix, delimiter) {
                Some(cp) => {
                    cursor = Some((past(&cp), None));
                    // A continuation from this very prefix: its versions were given already.
                    if after_prefix.as_deref() != Some(cp.as_str()) {
                        out.last = Some((cp.clone(), None));
                        out.prefixes.push(cp);
                    }
                    continue 'fetch;
                }
                None => {
                    let at = (o.key.clone(), Some(o.version_id.clone()));
                    cursor = Some(at.clone());
                    out.last = Some(at);
                    out.versions.push(o);
                }
            }
        }
        if !full {
            break;
        }
    }
    Ok(out)
}

pub(crate) async fn list_versions(
    s3: &KumoS3,
    req: S3Request<ListObjectVersionsInput>,
) -> S3Result<S3Response<ListObjectVersionsOutput>> {
    let a = s3.bucket(&req.credentials, &req.input.bucket, Access::Read).await?;
    let i = req.input;
    let prefix = i.prefix.clone().unwrap_or_default();
    let max = max_keys(i.max_keys)?;
    let key_marker = i.key_marker.clone().filter(|k| !k.is_empty());
    if i.version_id_marker.as_deref().is_some_and(|v| !v.is_empty()) && key_marker.is_none() {
        return Err(s3_error!(InvalidArgument, "A version-id marker cannot be specified without a key marker."));
    }
    let marker = key_marker.map(|k| (k, i.version_id_marker.clone().filter(|v| !v.is_empty())));
    let p = if max == 0 {
        Page { versions: vec![], prefixes: vec![], truncated: false, last: None }
    } else {
        page(s3, &a.bucket, &prefix, i.delimiter.as_deref(), marker, max).await?
    };
    let owner = Owner { display_name: Some(a.bucket.project_name.clone()), id: Some(a.bucket.project_id.to_string()) };
    let (markers, versions): (Vec<_>, Vec<_>) = p.versions.iter().partition(|o| o.delete_marker);
    let versions = versions
        .into_iter()
        .map(|o| ObjectVersion {
            key: Some(o.key.clone()),
            version_id: Some(o.version_id.clone()),
            is_latest: Some(o.is_latest),
            last_modified: Some(timestamp(o.time_modified)),
            e_tag: Some(etag(&o.etag)),
            size: Some(o.size as i64),
            storage_class: Some(ObjectVersionStorageClass::from_static(ObjectVersionStorageClass::STANDARD)),
            owner: Some(owner.clone()),
            ..Default::default()
        })
        .collect();
    let markers = markers
        .into_iter()
        .map(|o| DeleteMarkerEntry {
            key: Some(o.key.clone()),
            version_id: Some(o.version_id.clone()),
            is_latest: Some(o.is_latest),
            last_modified: Some(timestamp(o.time_modified)),
            owner: Some(owner.clone()),
        })
        .collect();
    let (next_key, next_version) = match (p.truncated, p.last) {
        (true, Some((k, v))) => (Some(k), v),
        _ => (None, None),
    };
    Ok(S3Response::new(ListObjectVersionsOutput {
        name: Some(a.bucket.name.clone()),
        prefix: Some(prefix),
        key_marker: i.key_marker,
        version_id_marker: i.version_id_marker,
        max_keys: Some(max as i32),
        is_truncated: Some(p.truncated),
        next_key_marker: next_key,
        next_version_id_marker: next_version,
        versions: Some(versions),
        delete_markers: Some(markers),
        common_prefixes: Some(p.prefixes.into_iter().map(|c| CommonPrefix { prefix: Some(c) }).collect()),
        delimiter: i.delimiter,
        encoding_type: i.encoding_type,
        ..Default::default()
    }))
}
