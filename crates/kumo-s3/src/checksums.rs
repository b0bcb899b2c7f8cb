//! Checksums a client sends with a body (`Content-MD5`, `x-amz-checksum-*` as headers or as
//! `aws-chunked` trailers, as the aws CLI and boto3 do by default): computed while the body is
//! written and compared before the object is committed. A mismatch is `BadDigest` and nothing is
//! kept.

use axum::http::HeaderMap;
use base64::Engine;
use bytes::Bytes;
use futures::StreamExt;
use kumo_objects::ByteStream;
use s3s::checksum::ChecksumHasher;
use s3s::crypto::{Checksum as _, Crc32, Crc32c, Crc64Nvme, Sha1, Sha256};
use s3s::dto::{Checksum, StreamingBlob};
use s3s::{s3_error, S3Result};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// The algorithms S3 knows, by the suffix of their header (`x-amz-checksum-<name>`).
const NAMES: [&str; 5] = ["crc32", "crc32c", "crc64nvme", "sha1", "sha256"];

/// What a request promises about its body.
pub struct Expected {
    /// From `Content-MD5`.
    md5: Option<[u8; 16]>,
    /// `x-amz-checksum-<name>` values sent as headers.
    headers: BTreeMap<&'static str, String>,
    /// Algorithms whose values come as trailers (`x-amz-trailer`).
    trailers: Vec<&'static str>,
}

impl Expected {
    pub fn from_headers(h: &HeaderMap) -> S3Result<Expected> {
        let md5 = match h.get("content-md5") {
            None => None,
            Some(v) => {
                let raw = base64::engine::general_purpose::STANDARD
                    .decode(v.as_bytes())
                    .ok()
                    .and_then(|b| <[u8; 16]>::try_from(b).ok())
                    .ok_or_else(|| s3_error!(InvalidDigest, "The Content-MD5 you specified is not valid."))?;
                Some(raw)
            }
        };
        let mut headers = BTreeMap::new();
        for n in NAMES {
            if let Some(v) = h.get(format!("x-amz-checksum-{n}")) {
                let v = v.to_str().map_err(|_| s3_error!(InvalidArgument, "bad x-amz-checksum-{n}"))?;
                headers.insert(n, v.to_string());
            }
        }
        let mut trailers = Vec::new();
        if let Some(t) = h.get("x-amz-trailer").and_then(|v| v.to_str().ok()) {
            for name in t.split(',').map(str::trim) {
                if let Some(n) = NAMES.iter().find(|n| name.eq_ignore_ascii_case(&format!("x-amz-checksum-{n}"))) {
                    trailers.push(*n);
                }
            }
        }
        Ok(Expected { md5, headers, trailers })
    }

    fn hasher(&self) -> ChecksumHasher {
        let want = |n: &str| self.headers.contains_key(n) || self.trailers.contains(&n);
        ChecksumHasher {
            crc32: want("crc32").then(Crc32::new),
            crc32c: want("crc32c").then(Crc32c::new),
            sha1: want("sha1").then(Sha1::new),
            sha256: want("sha256").then(Sha256::new),
            crc64nvme: want("crc64nvme").then(Crc64Nvme::new),
        }
    }
}

/// A body being hashed as it is read.
pub struct Hashing {
    hasher: Arc<Mutex<Option<ChecksumHasher>>>,
}

/// Wraps `body` so that the checksums `expected` names are computed as it streams.
pub fn hashing(body: StreamingBlob, expected: &Expected) -> (ByteStream, Hashing) {
    let hasher = Arc::new(Mutex::new(Some(expected.hasher())));
    let h = hasher.clone();
    let stream = body.map(move |r| match r {
        Ok(b) => {
            if let Some(h) = h.lock().unwrap_or_else(|p| p.into_inner()).as_mut() {
                h.update(&b);
            }
            Ok::<Bytes, std::io::Error>(b)
        }
        Err(e) => Err(std::io::Error::other(e.to_string())),
    });
    (Box::pin(stream), Hashing { hasher })
}

fn values(c: &Checksum) -> BTreeMap<&'static str, String> {
    let mut m = BTreeMap::new();
    for (n, v) in [
        ("crc32", &c.checksum_crc32),
        ("crc32c", &c.checksum_crc32c),
        ("crc64nvme", &c.checksum_crc64nvme),
        ("sha1", &c.checksum_sha1),
        ("sha256", &c.checksum_sha256),
    ] {
        if let Some(v) = v {
            m.insert(n, v.clone());
        }
    }
    m
}

impl Hashing {
    /// Compares what was computed with what was promised (`trailers`: the request's verified
    /// trailing headers, once the body is read). Ok: the verified checksums, by algorithm.
    pub fn verify(
        self,
        expected: &Expected,
        md5: [u8; 16],
        trailers: Option<HeaderMap>,
    ) -> S3Result<BTreeMap<String, String>> {
        if expected.md5.is_some_and(|m| m != md5) {
            return Err(s3_error!(BadDigest, "The Content-MD5 you specified did not match what we received."));
        }
        let computed = self.hasher.lock().unwrap_or_else(|p| p.into_inner()).take().map(ChecksumHasher::finalize);
        let computed = computed.as_ref().map(values).unwrap_or_default();
        let mut promised = expected.headers.clone();
        for n in &expected.trailers {
            let v = trailers
                .as_ref()
                .and_then(|t| t.get(format!("x-amz-checksum-{n}")))
                .and_then(|v| v.to_str().ok())
                .ok_or_else(|| {
                    s3_error!(InvalidRequest, "the trailer x-amz-checksum-{n} was announced but not sent")
                })?;
            promised.insert(n, v.to_string());
        }
        let mut ok = BTreeMap::new();
        for (n, want) in promised {
            let got = computed.get(n).cloned().unwrap_or_default();
            if got != want {
                return Err(s3_error!(
                    BadDigest,
                    "The {} you specified did not match the calculated checksum.",
                    n.to_uppercase()
                ));
            }
            ok.insert(n.to_string(), got);
        }
        Ok(ok)
    }
}
