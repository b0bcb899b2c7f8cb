//! Object storage buckets as the REST API shows them (the objects themselves are reached through
//! the S3 endpoint, `kumod --s3-listen`).

use crate::BucketId;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A bucket: who owns it, who may read it, what it holds.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct BucketView {
    /// Unique id (UUID).
    #[schema(value_type = Uuid)]
    pub id: BucketId,
    /// Name, unique on the endpoint (S3 rules: 3-63 lower-case letters, digits, dots, hyphens).
    pub name: String,
    /// The project it belongs to.
    pub project: String,
    /// Whether anyone, signed or not, may read its objects (the canned ACL `public-read`).
    pub public_read: bool,
    /// Versioning, as S3's PutBucketVersioning set it: `enabled` or `suspended`; null when it
    /// was never enabled.
    pub versioning: Option<String>,
    /// Current objects in it (the latest version of each key, when that is not a delete marker).
    pub objects: u64,
    /// Bytes stored: of its objects and of their noncurrent versions (what is billed).
    pub bytes: u64,
    /// Multipart uploads in progress.
    pub uploads: u64,
    /// Its cost so far this month (storage and requests, as the usage report counts them), in
    /// minor units (cents).
    #[serde(default)]
    pub cost_month_to_date: i64,
    /// When it was created.
    pub time_created: chrono::DateTime<chrono::Utc>,
}

/// Changes to a bucket: any of its fields (at least one).
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BucketUpdate {
    /// Make its objects readable by anyone (true) or by the project only (false). Owners only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_read: Option<bool>,
    /// Keep every version of its objects (`enabled`), or stop making new ones (`suspended`,
    /// keeping those it has): S3's PutBucketVersioning. A bucket once versioned is never
    /// unversioned again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub versioning: Option<BucketVersioning>,
}

/// A bucket's versioning, as it can be set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum BucketVersioning {
    Enabled,
    Suspended,
}

/// Parameters to create a bucket.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BucketCreate {
    /// Name, unique on the endpoint: 3-63 characters of lower-case letters, digits, dots and
    /// hyphens, beginning and ending with a letter or digit, not shaped like an IP address.
    #[schema(min_length = 3, max_length = 63, pattern = "^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")]
    pub name: String,
    /// Let anyone read its objects (the canned ACL `public-read`); default private.
    #[serde(default)]
    pub public_read: bool,
}

/// Whether `name` is a valid bucket name (S3's rules for new buckets).
pub fn valid_bucket_name(name: &str) -> bool {
    let b = name.as_bytes();
    (3..=63).contains(&b.len())
        && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'.' || *c == b'-')
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && !name.contains("..")
        && !name.contains(".-")
        && !name.contains("-.")
        && name.parse::<std::net::Ipv4Addr>().is_err()
        && !name.starts_with("xn--")
}

#[cfg(test)]
mod tests {
    use super::valid_bucket_name;

    #[test]
    fn bucket_names_follow_s3() {
        for ok in ["abc", "photos", "my.site-1", "a1b", &"a".repeat(63)] {
            assert!(valid_bucket_name(ok), "{ok}");
        }
        for bad in
            ["ab", "Photos", "-abc", "abc-", "a..b", "a.-b", "192.168.1.1", "under_score", &"a".repeat(64), "xn--abc"]
        {
            assert!(!valid_bucket_name(bad), "{bad}");
        }
    }
}
