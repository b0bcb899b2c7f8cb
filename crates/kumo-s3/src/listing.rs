//! ListObjects (v1 and v2): keys in byte order, with prefix, delimiter (common prefixes),
//! start-after / marker, continuation tokens and max-keys.

use crate::service::{etag, store_err, timestamp, KumoS3};
use kumo_control::context::Access;
use kumo_store::objects::Bucket;
use s3s::dto::*;
use s3s::{s3_error, S3Request, S3Response, S3Result};

/// One page of a listing.
pub(crate) struct Page {
    pub objects: Vec<kumo_store::objects::Object>,
    pub prefixes: Vec<String>,
    pub truncated: bool,
    /// The last key or common prefix given (where the next page starts after).
    pub last: Option<String>,
}

pub(crate) const BATCH: usize = 1000;

/// The common prefix `key` rolls up into: `prefix` and what follows it up to the first
/// `delimiter` (None: no delimiter after the prefix, the key is listed itself).
pub(crate) fn common_prefix(key: &str, prefix: &str, delimiter: Option<&str>) -> Option<String> {
    let d = delimiter.filter(|d| !d.is_empty())?;
    key[prefix.len()..].find(d).map(|i| key[..prefix.len() + i + d.len()].to_string())
}

/// Where a listing resumes after a common prefix: past every key under it.
pub(crate) fn past(common_prefix: &str) -> String {
    format!("{common_prefix}\u{10FFFF}")
}

/// Lists up to `max` keys and common prefixes of `bucket` after `after`.
pub(crate) async fn page(
    s3: &KumoS3,
    bucket: &Bucket,
    prefix: &str,
    delimiter: Option<&str>,
    after: Option<&str>,
    max: usize,
) -> S3Result<Page> {
    let mut out = Page { objects: Vec::new(), prefixes: Vec::new(), truncated: false, last: None };
    let mut cursor = after.map(str::to_string);
    let mut conn = s3.app.store.read().await.map_err(store_err)?;
    'fetch: loop {
        let batch = kumo_store::objects::object_list(&mut conn, bucket.id, prefix, cursor.as_deref(), BATCH)
            .await
            .map_err(store_err)?;
        let full = batch.len() == BATCH;
        for o in batch {
            let common = common_prefix(&o.key, prefix, delimiter);
            if out.objects.len() + out.prefixes.len() == max {
                out.truncated = true;
                break 'fetch;
            }
            match common {
                Some(cp) => {
                    // A continuation from this very prefix: its keys were given already.
                    if after == Some(cp.as_str()) {
                        cursor = Some(past(&cp));
                        continue 'fetch;
                    }
                    out.last = Some(cp.clone());
                    // Skip every other key under this prefix.
                    cursor = Some(past(&cp));
                    out.prefixes.push(cp);
                    continue 'fetch;
                }
                None => {
                    cursor = Some(o.key.clone());
                    out.last = Some(o.key.clone());
                    out.objects.push(o);
                }
            }
        }
        if !full {
            break;
        }
    }
    Ok(out)
}

pub(crate) fn max_keys(m: Option<i32>) -> S3Result<usize> {
    match m {
        None => Ok(1000),
        Some(n) if n < 0 => Err(s3_error!(InvalidArgument, "max-keys must not be negative")),
        Some(n) => Ok((n as usize).min(1000)),
    }
}

fn contents(p: &Page) -> Vec<Object> {
    p.objects
        .iter()
        .map(|o| Object {
            key: Some(o.key.clone()),
            size: Some(o.size as i64),
            e_tag: Some(etag(&o.etag)),
            last_modified: Some(timestamp(o.time_modified)),
            storage_class: Some(ObjectStorageClass::from_static(ObjectStorageClass::STANDARD)),
            ..Default::default()
        })
        .collect()
}

fn prefixes(p: &Page) -> Vec<CommonPrefix> {
    p.prefixes.iter().map(|c| CommonPrefix { prefix: Some(c.clone()) }).collect()
}

pub(crate) async fn list_objects(
    s3: &KumoS3,
    req: S3Request<ListObjectsInput>,
) -> S3Result<S3Response<ListObjectsOutput>> {
    let a = s3.bucket(&req.credentials, &req.input.bucket, Access::Read).await?;
    let i = req.input;
    let prefix = i.prefix.clone().unwrap_or_default();
    let max = max_keys(i.max_keys)?;
    let p = if max == 0 {
        Page { objects: vec![], prefixes: vec![], truncated: false, last: None }
    } else {
        page(s3, &a.bucket, &prefix, i.delimiter.as_deref(), i.marker.as_deref().filter(|m| !m.is_empty()), max).await?
    };
    Ok(S3Response::new(ListObjectsOutput {
        name: Some(a.bucket.name.clone()),
        prefix: Some(prefix),
        marker: i.marker,
        max_keys: Some(max as i32),
        is_truncated: Some(p.truncated),
        contents: Some(contents(&p)),
        common_prefixes: Some(prefixes(&p)),
        // Given only with a delimiter (without one, clients use the last key), as S3 does.
        next_marker: if p.truncated && i.delimiter.is_some() { p.last.clone() } else { None },
        delimiter: i.delimiter,
        encoding_type: i.encoding_type,
        ..Default::default()
    }))
}

pub(crate) async fn list_objects_v2(
    s3: &KumoS3,
    req: S3Request<ListObjectsV2Input>,
) -> S3Result<S3Response<ListObjectsV2Output>> {
    let a = s3.bucket(&req.credentials, &req.input.bucket, Access::Read).await?;
    let i = req.input;
    let prefix = i.prefix.clone().unwrap_or_default();
    let max = max_keys(i.max_keys)?;
    let after = match &i.continuation_token {
        Some(t) => Some(decode_token(t)?),
        None => i.start_after.clone().filter(|s| !s.is_empty()),
    };
    let p = if max == 0 {
        Page { objects: vec![], prefixes: vec![], truncated: false, last: None }
    } else {
        page(s3, &a.bucket, &prefix, i.delimiter.as_deref(), after.as_deref(), max).await?
    };
    Ok(S3Response::new(ListObjectsV2Output {
        name: Some(a.bucket.name.clone()),
        prefix: Some(prefix),
        max_keys: Some(max as i32),
        key_count: Some((p.objects.len() + p.prefixes.len()) as i32),
        continuation_token: i.continuation_token,
        is_truncated: Some(p.truncated),
        next_continuation_token: if p.truncated { p.last.as_deref().map(encode_token) } else { None },
        contents: Some(contents(&p)),
        common_prefixes: Some(prefixes(&p)),
        delimiter: i.delimiter,
        encoding_type: i.encoding_type,
        start_after: i.start_after,
        ..Default::default()
    }))
}

/// Continuation tokens are opaque to clients: the last key given, base64url.
fn encode_token(last: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(last)
}

fn decode_token(t: &str) -> S3Result<String> {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(t)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| s3_error!(InvalidArgument, "The continuation token provided is incorrect"))
}
