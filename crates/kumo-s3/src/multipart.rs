//! Multipart uploads: create, upload part, complete (parts validated: ascending part numbers,
//! ETags that match, every part but the last at least 5 MiB), abort, list parts, list uploads.
//! Parts stay the blobs they were written as; completing names them, in order, as the object's.

use crate::service::{data_err, etag, internal, store_err, timestamp, upload_id, version_shown, KumoS3, StoredHeaders};
use kumo_control::context::Access;
use md5::{Digest, Md5};
use s3s::dto::*;
use s3s::{s3_error, S3Request, S3Response, S3Result};

/// The smallest part but the last (S3's 5 MiB).
pub const MIN_PART_BYTES: u64 = 5 << 20;

/// The highest part number.
pub const MAX_PART_NUMBER: i32 = 10_000;

pub(crate) async fn create(
    s3: &KumoS3,
    req: S3Request<CreateMultipartUploadInput>,
) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
    let a = s3.bucket(&req.credentials, &req.input.bucket, Access::Write).await?;
    let i = req.input;
    let headers = StoredHeaders {
        content_type: i.content_type.map(|c| c.to_string()),
        content_encoding: i.content_encoding,
        content_disposition: i.content_disposition,
        content_language: i.content_language,
        cache_control: i.cache_control,
        meta: i.metadata.unwrap_or_default().into_iter().collect(),
    };
    let mut tx = s3.app.store.begin().await.map_err(store_err)?;
    let id = kumo_store::objects::upload_create(&mut tx, a.bucket.id, &i.key, &headers.to_json())
        .await
        .map_err(store_err)?;
    tx.commit().await.map_err(|e| store_err(e.into()))?;
    Ok(S3Response::new(CreateMultipartUploadOutput {
        bucket: Some(a.bucket.name.clone()),
        key: Some(i.key),
        upload_id: Some(id.to_string()),
        ..Default::default()
    }))
}

pub(crate) async fn upload_part(
    s3: &KumoS3,
    req: S3Request<UploadPartInput>,
) -> S3Result<S3Response<UploadPartOutput>> {
    let a = s3.bucket(&req.credentials, &req.input.bucket, Access::Write).await?;
    let mut i = req.input;
    let uid = part_target(s3, &a, i.part_number, &i.upload_id, &i.key).await?;
    s3.precheck(&a, 0, i.content_length.unwrap_or(0)).await?;
    let (blob, sums) =
        s3.write_body(i.body.take(), &req.headers, req.trailing_headers, i64::from(i.part_number)).await?;
    let md5 = blob.md5.clone();
    record_part(s3, &a, uid, &blob).await?;
    let g = |n: &str| sums.get(n).cloned();
    Ok(S3Response::new(UploadPartOutput {
        e_tag: Some(etag(&md5)),
        checksum_crc32: g("crc32"),
        checksum_crc32c: g("crc32c"),
        checksum_crc64nvme: g("crc64nvme"),
        checksum_sha1: g("sha1"),
        checksum_sha256: g("sha256"),
        ..Default::default()
    }))
}

/// Where a part goes: its number must be 1-10,000 and its upload live, of this bucket and key.
async fn part_target(
    s3: &KumoS3,
    a: &crate::service::Authorised,
    part_number: i32,
    upload: &str,
    key: &str,
) -> S3Result<kumo_types::UploadId> {
    if !(1..=MAX_PART_NUMBER).contains(&part_number) {
        return Err(s3_error!(InvalidArgument, "Part number must be an integer between 1 and 10000, inclusive"));
    }
    let uid = upload_id(upload)?;
    let mut conn = s3.app.store.read().await.map_err(store_err)?;
    let u = kumo_store::objects::upload_get(&mut conn, a.bucket.id, uid).await.map_err(store_err)?;
    if u.is_none_or(|u| u.key != key) {
        return Err(s3_error!(NoSuchUpload));
    }
    Ok(uid)
}

/// Names a durable blob as a part of an upload and charges it, in one transaction; the blob is
/// removed when that fails (the upload went meanwhile, the quota is full).
async fn record_part(
    s3: &KumoS3,
    a: &crate::service::Authorised,
    uid: kumo_types::UploadId,
    blob: &kumo_store::objects::Blob,
) -> S3Result<()> {
    let mut tx = s3.app.store.begin().await.map_err(store_err)?;
    let recorded = match kumo_store::objects::upload_put_part(&mut tx, uid, blob).await.map_err(store_err)? {
        None => Err(s3_error!(NoSuchUpload)),
        Some(replaced) => s3.charge(&mut tx, a, 0, blob.size as i64 - replaced as i64).await,
    };
    if let Err(e) = recorded {
        drop(tx);
        let _ = s3.app.objects.remove(blob.id.get()).await;
        return Err(e);
    }
    tx.commit().await.map_err(|e| store_err(e.into()))
}

/// `UploadPartCopy`: a part made of (a range of) an existing object, copied on the server (what
/// the aws CLI does to copy objects over its multipart threshold).
pub(crate) async fn upload_part_copy(
    s3: &KumoS3,
    req: S3Request<UploadPartCopyInput>,
) -> S3Result<S3Response<UploadPartCopyOutput>> {
    let a = s3.bucket(&req.credentials, &req.input.bucket, Access::Write).await?;
    let i = req.input;
    let uid = part_target(s3, &a, i.part_number, &i.upload_id, &i.key).await?;
    let conditions = (
        &i.copy_source_if_match,
        &i.copy_source_if_none_match,
        i.copy_source_if_modified_since,
        i.copy_source_if_unmodified_since,
    );
    let (_, o) = s3.copy_source(&req.credentials, &a, &i.copy_source, conditions).await?;
    let range = match &i.copy_source_range {
        None => 0..o.size,
        Some(r) => {
            let bad = || {
                s3_error!(InvalidArgument, "The x-amz-copy-source-range value must be of the form bytes=first-last where first and last are the zero-based offsets of the first and last bytes to copy")
            };
            let (first, last) = r.strip_prefix("bytes=").and_then(|r| r.split_once('-')).ok_or_else(bad)?;
            let (first, last): (u64, u64) = (first.parse().map_err(|_| bad())?, last.parse().map_err(|_| bad())?);
            if first > last || last >= o.size {
                return Err(s3_error!(InvalidRange, "The requested range is not satisfiable"));
            }
            first..last + 1
        }
    };
    if range.end - range.start > crate::service::MAX_PUT_BYTES {
        return Err(s3_error!(EntityTooLarge, "a copied part is at most 5 GiB"));
    }
    s3.precheck(&a, 0, (range.end - range.start) as i64).await?;
    let body = s3.read_range(&o, range).await?;
    let id: kumo_types::BlobId = kumo_store::new_id();
    let w = s3.app.objects.write(id.get(), body, crate::service::MAX_PUT_BYTES).await.map_err(data_err)?;
    let blob = crate::service::blob_of(id, i64::from(i.part_number), w);
    record_part(s3, &a, uid, &blob).await?;
    Ok(S3Response::new(UploadPartCopyOutput {
        copy_part_result: Some(CopyPartResult {
            e_tag: Some(etag(&blob.md5)),
            last_modified: Some(timestamp(chrono::Utc::now())),
            ..Default::default()
        }),
        ..Default::default()
    }))
}

pub(crate) async fn complete(
    s3: &KumoS3,
    req: S3Request<CompleteMultipartUploadInput>,
) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
    let a = s3.bucket(&req.credentials, &req.input.bucket, Access::Write).await?;
    let i = req.input;
    let uid = upload_id(&i.upload_id)?;
    let wanted = i.multipart_upload.and_then(|m| m.parts).unwrap_or_default();
    if wanted.is_empty() {
        return Err(s3_error!(MalformedXML, "You must specify at least one part"));
    }
    let mut tx = s3.app.store.begin().await.map_err(store_err)?;
    let upload = kumo_store::objects::upload_get(&mut tx, a.bucket.id, uid)
        .await
        .map_err(store_err)?
        .filter(|u| u.key == i.key)
        .ok_or_else(|| s3_error!(NoSuchUpload))?;
    let have = kumo_store::objects::upload_parts(&mut tx, uid).await.map_err(store_err)?;
    // Order first, then each part (present, its ETag), then sizes: the error S3 gives first.
    let mut last = 0;
    for p in &wanted {
        let number = p.part_number.ok_or_else(|| s3_error!(MalformedXML, "a part has no PartNumber"))?;
        if number <= last {
            return Err(s3_error!(InvalidPartOrder, "The list of parts was not in ascending order. The parts list must be specified in order by part number."));
        }
        last = number;
    }
    let mut blobs = Vec::with_capacity(wanted.len());
    for p in &wanted {
        let number = i64::from(p.part_number.unwrap_or_default());
        let blob = have
            .iter()
            .find(|b| b.seq == number)
            .filter(|b| p.e_tag.as_ref().is_none_or(|e| e.value().trim_matches('"') == b.md5))
            .ok_or_else(|| s3_error!(InvalidPart, "One or more of the specified parts could not be found. The part may not have been uploaded, or the specified entity tag may not have matched the part's entity tag."))?;
        blobs.push(blob);
    }
    let mut chosen = Vec::with_capacity(blobs.len());
    let mut size = 0u64;
    let mut md5s = Md5::new();
    for (n, blob) in blobs.iter().enumerate() {
        if n + 1 < blobs.len() && blob.size < MIN_PART_BYTES {
            return Err(s3_error!(EntityTooSmall, "Your proposed upload is smaller than the minimum allowed object size (part {}: {} bytes; every part but the last must be at least 5 MiB).", blob.seq, blob.size));
        }
        size += blob.size;
        md5s.update(hex::decode(&blob.md5).map_err(internal)?);
        chosen.push(blob.id);
    }
    let etag_value = format!("{}-{}", hex::encode(md5s.finalize()), chosen.len());
    let new = kumo_store::objects::NewObject {
        bucket_id: a.bucket.id,
        key: &i.key,
        size,
        etag: &etag_value,
        headers: &upload.headers,
        checksums: "{}",
        only_if_absent: false,
    };
    let (w, left_out) = kumo_store::objects::upload_complete(&mut tx, uid, &new, a.bucket.versioning, &chosen)
        .await
        .map_err(store_err)?;
    // The parts were charged as they came: the object counts once, what it replaced for good and
    // the parts left out are given back.
    s3.charge_written(&mut tx, &a, &w, size, size + left_out).await?;
    let ev = s3
        .audit(
            &mut tx,
            &a,
            ("object", uid.get(), &format!("{}/{}", a.bucket.name, i.key)),
            "put",
            "s3_complete_multipart_upload",
        )
        .await?;
    tx.commit().await.map_err(|e| store_err(e.into()))?;
    s3.publish(&a, ev);
    Ok(S3Response::new(CompleteMultipartUploadOutput {
        bucket: Some(a.bucket.name.clone()),
        key: Some(i.key.clone()),
        e_tag: Some(etag(&etag_value)),
        location: Some(format!("/{}/{}", a.bucket.name, i.key)),
        version_id: version_shown(&a.bucket, &w.version_id),
        ..Default::default()
    }))
}

pub(crate) async fn abort(
    s3: &KumoS3,
    req: S3Request<AbortMultipartUploadInput>,
) -> S3Result<S3Response<AbortMultipartUploadOutput>> {
    let a = s3.bucket(&req.credentials, &req.input.bucket, Access::Write).await?;
    let uid = upload_id(&req.input.upload_id)?;
    let mut tx = s3.app.store.begin().await.map_err(store_err)?;
    let found = kumo_store::objects::upload_get(&mut tx, a.bucket.id, uid).await.map_err(store_err)?;
    if found.is_none_or(|u| u.key != req.input.key) {
        return Err(s3_error!(NoSuchUpload));
    }
    let parts = kumo_store::objects::upload_abort(&mut tx, uid).await.map_err(store_err)?.unwrap_or(0);
    s3.charge(&mut tx, &a, 0, -(parts as i64)).await?;
    tx.commit().await.map_err(|e| store_err(e.into()))?;
    Ok(S3Response::new(AbortMultipartUploadOutput::default()))
}

pub(crate) async fn list_parts(s3: &KumoS3, req: S3Request<ListPartsInput>) -> S3Result<S3Response<ListPartsOutput>> {
    let a = s3.bucket(&req.credentials, &req.input.bucket, Access::Read).await?;
    let i = req.input;
    let uid = upload_id(&i.upload_id)?;
    let mut conn = s3.app.store.read().await.map_err(store_err)?;
    let u = kumo_store::objects::upload_get(&mut conn, a.bucket.id, uid)
        .await
        .map_err(store_err)?
        .filter(|u| u.key == i.key)
        .ok_or_else(|| s3_error!(NoSuchUpload))?;
    let max = i.max_parts.unwrap_or(1000).clamp(0, 1000) as usize;
    let after = i64::from(i.part_number_marker.unwrap_or(0));
    let all = kumo_store::objects::upload_parts(&mut conn, uid).await.map_err(store_err)?;
    let rest: Vec<_> = all.into_iter().filter(|b| b.seq > after).collect();
    let truncated = rest.len() > max;
    let parts: Vec<Part> = rest
        .iter()
        .take(max)
        .map(|b| Part {
            part_number: Some(b.seq as i32),
            size: Some(b.size as i64),
            e_tag: Some(etag(&b.md5)),
            last_modified: Some(timestamp(u.time_created)),
            ..Default::default()
        })
        .collect();
    Ok(S3Response::new(ListPartsOutput {
        bucket: Some(a.bucket.name.clone()),
        key: Some(u.key),
        upload_id: Some(uid.to_string()),
        max_parts: Some(max as i32),
        is_truncated: Some(truncated),
        next_part_number_marker: parts.last().and_then(|p| p.part_number).filter(|_| truncated),
        part_number_marker: i.part_number_marker,
        parts: Some(parts),
        ..Default::default()
    }))
}

pub(crate) async fn list_uploads(
    s3: &KumoS3,
    req: S3Request<ListMultipartUploadsInput>,
) -> S3Result<S3Response<ListMultipartUploadsOutput>> {
    let a = s3.bucket(&req.credentials, &req.input.bucket, Access::Read).await?;
    let i = req.input;
    let prefix = i.prefix.clone().unwrap_or_default();
    let max = i.max_uploads.unwrap_or(1000).clamp(0, 1000) as usize;
    let mut conn = s3.app.store.read().await.map_err(store_err)?;
    let mut all =
        kumo_store::objects::upload_list(&mut conn, a.bucket.id, &prefix, max + 1).await.map_err(store_err)?;
    let truncated = all.len() > max;
    all.truncate(max);
    let uploads = all
        .iter()
        .map(|u| MultipartUpload {
            key: Some(u.key.clone()),
            upload_id: Some(u.id.to_string()),
            initiated: Some(timestamp(u.time_created)),
            storage_class: Some(StorageClass::from_static(StorageClass::STANDARD)),
            ..Default::default()
        })
        .collect();
    Ok(S3Response::new(ListMultipartUploadsOutput {
        bucket: Some(a.bucket.name.clone()),
        prefix: Some(prefix),
        max_uploads: Some(max as i32),
        is_truncated: Some(truncated),
        uploads: Some(uploads),
        ..Default::default()
    }))
}
