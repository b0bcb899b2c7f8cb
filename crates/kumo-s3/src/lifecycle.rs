//! Bucket lifecycle rules: S3's `LifecycleConfiguration` to and from the rules Kumo keeps
//! (`kumo_store::objects::LifecycleRule`) and applies (the sweep, `background/sweep.rs`).
//! Kumo applies expiration after N days, the abort of incomplete uploads after N days and the
//! deletion of versions noncurrent for N days, by key prefix; the rest (dates, transitions,
//! newer-noncurrent counts, tags, sizes) is refused with `NotImplemented` rather than accepted and
//! ignored.

use kumo_store::objects::LifecycleRule;
use s3s::dto::{
    AbortIncompleteMultipartUpload, ExpirationStatus, LifecycleExpiration, LifecycleRule as S3Rule,
    LifecycleRuleFilter, NoncurrentVersionExpiration,
};
use s3s::{s3_error, S3Result};

/// The most rules a bucket takes (S3's limit).
const MAX_RULES: usize = 1000;

pub(crate) fn from_s3(rules: &[S3Rule]) -> S3Result<Vec<LifecycleRule>> {
    if rules.is_empty() {
        return Err(s3_error!(MalformedXML, "a lifecycle configuration needs at least one Rule"));
    }
    if rules.len() > MAX_RULES {
        return Err(s3_error!(InvalidRequest, "a bucket takes at most {MAX_RULES} lifecycle rules"));
    }
    let mut out = Vec::with_capacity(rules.len());
    for (i, r) in rules.iter().enumerate() {
        let id = r.id.clone().unwrap_or_else(|| format!("rule-{}", i + 1));
        let unsupported = |what: &str| s3_error!(NotImplemented, "lifecycle rule '{id}': {what} is not supported");
        if r.transitions.as_ref().is_some_and(|t| !t.is_empty()) {
            return Err(unsupported("Transition"));
        }
        if r.noncurrent_version_transitions.as_ref().is_some_and(|t| !t.is_empty()) {
            return Err(unsupported("NoncurrentVersionTransition"));
        }
        let noncurrent_days = match &r.noncurrent_version_expiration {
            None => None,
            Some(n) if n.newer_noncurrent_versions.is_some() => return Err(unsupported("NewerNoncurrentVersions")),
            Some(n) => Some(days(&id, n.noncurrent_days)?),
        };
        let prefix = match &r.filter {
            None => r.prefix.clone().unwrap_or_default(),
            Some(f) => {
                if f.and.is_some()
                    || f.tag.is_some()
                    || f.object_size_greater_than.is_some()
                    || f.object_size_less_than.is_some()
                {
                    return Err(unsupported("a filter other than Prefix"));
                }
                f.prefix.clone().unwrap_or_default()
            }
        };
        let expire_days = match &r.expiration {
            None => None,
            Some(e) => {
                if e.date.is_some() {
                    return Err(unsupported("Expiration by Date"));
                }
                if e.expired_object_delete_marker.is_some() {
                    return Err(unsupported("ExpiredObjectDeleteMarker"));
                }
                Some(days(&id, e.days)?)
            }
        };
        let abort_upload_days = match &r.abort_incomplete_multipart_upload {
            None => None,
            Some(a) => Some(days(&id, a.days_after_initiation)?),
        };
        if expire_days.is_none() && abort_upload_days.is_none() && noncurrent_days.is_none() {
            return Err(s3_error!(
                InvalidRequest,
                "lifecycle rule '{id}' has no action: give Expiration Days, AbortIncompleteMultipartUpload or NoncurrentVersionExpiration"
            ));
        }
        out.push(LifecycleRule {
            id,
            prefix,
            enabled: r.status.as_str() == ExpirationStatus::ENABLED,
            expire_days,
            abort_upload_days,
            noncurrent_days,
        });
    }
    Ok(out)
}

fn days(id: &str, d: Option<i32>) -> S3Result<u32> {
    match d {
        Some(n) if n > 0 => Ok(n as u32),
        _ => Err(s3_error!(InvalidArgument, "lifecycle rule '{id}': Days must be a positive whole number")),
    }
}

pub(crate) fn to_s3(rules: &[LifecycleRule]) -> Vec<S3Rule> {
    rules
        .iter()
        .map(|r| S3Rule {
            id: Some(r.id.clone()),
            status: ExpirationStatus::from_static(if r.enabled {
                ExpirationStatus::ENABLED
            } else {
                ExpirationStatus::DISABLED
            }),
            filter: Some(LifecycleRuleFilter { prefix: Some(r.prefix.clone()), ..Default::default() }),
            expiration: r.expire_days.map(|d| LifecycleExpiration { days: Some(d as i32), ..Default::default() }),
            abort_incomplete_multipart_upload: r
                .abort_upload_days
                .map(|d| AbortIncompleteMultipartUpload { days_after_initiation: Some(d as i32) }),
            noncurrent_version_expiration: r.noncurrent_days.map(|d| NoncurrentVersionExpiration {
                noncurrent_days: Some(d as i32),
                newer_noncurrent_versions: None,
            }),
            noncurrent_version_transitions: None,
            prefix: None,
            transitions: None,
        })
        .collect()
}
