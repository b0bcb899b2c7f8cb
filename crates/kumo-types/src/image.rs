//! Images: bootable disk templates. Public images (project null) are provided by the operator;
//! project images are imported by tenants.

use crate::ImageId;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// How an image boots.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ImageBoot {
    /// Direct kernel boot: the image carries a kernel and initrd besides its disk.
    Kernel,
    /// Firmware (BIOS) boot from the disk's boot loader.
    Disk,
}

impl ImageBoot {
    pub fn as_str(self) -> &'static str {
        match self {
            ImageBoot::Kernel => "kernel",
            ImageBoot::Disk => "disk",
        }
    }
    pub fn parse(s: &str) -> Option<ImageBoot> {
        match s {
            "kernel" => Some(ImageBoot::Kernel),
            "disk" => Some(ImageBoot::Disk),
            _ => None,
        }
    }
}

/// Parameters to make a project image from a snapshot or from a stopped instance's root disk.
/// Exactly one source.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ImageCreate {
    /// Name, unique within the project.
    pub name: crate::Name,
    /// Free-form description.
    #[serde(default)]
    #[schema(max_length = 512)]
    pub description: String,
    /// Make it from this snapshot (name or id): the volume's data at that instant.
    #[serde(default)]
    #[schema(
        pattern = "^([a-z]([a-z0-9-]{0,61}[a-z0-9])?|[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})$"
    )]
    pub source_snapshot: Option<String>,
    /// Make it from this stopped instance's root disk (name or id); it boots like the instance.
    #[serde(default)]
    #[schema(
        pattern = "^([a-z]([a-z0-9-]{0,61}[a-z0-9])?|[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})$"
    )]
    pub source_instance: Option<String>,
}

/// A bootable image.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ImageView {
    /// Unique id (UUID).
    #[schema(value_type = Uuid)]
    pub id: ImageId,
    /// Name, unique among public images or within its project.
    pub name: String,
    /// Free-form description.
    pub description: String,
    /// When it was created.
    pub time_created: chrono::DateTime<chrono::Utc>,
    /// When it was last changed.
    pub time_modified: chrono::DateTime<chrono::Utc>,
    /// Owning project, or null for a public image every project can use.
    pub project: Option<String>,
    /// Operating system it contains.
    pub os: String,
    /// How it boots.
    pub boot: ImageBoot,
    /// Virtual size of its disk in bytes.
    pub size_bytes: i64,
    /// What the image's maker says about the OS in it: from the image cache's manifest for a public
    /// image, from the import's parameters for an imported one.
    #[serde(default)]
    pub os_facts: ImageFacts,
}

/// An image's OS facts; each is null when not known.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ImageFacts {
    /// Distribution (`debian`, …).
    #[serde(default)]
    pub os_family: Option<String>,
    /// Its version (`12`, …).
    #[serde(default)]
    pub os_version: Option<String>,
    /// The user cloud-init makes for the instance's SSH keys (`kumo instance ssh` logs in as it).
    #[serde(default)]
    pub default_user: Option<String>,
    /// Smallest memory an instance of the image may have: smaller instance types are refused.
    #[serde(default)]
    pub min_memory_mib: Option<i64>,
    /// Smallest root disk: an instance's root disk is grown to it (as to the image's virtual size).
    #[serde(default)]
    pub min_disk_gib: Option<i64>,
}

/// Longest `os_family` / `os_version` accepted (os-release's `ID` and `VERSION_ID` are short tokens).
pub const OS_FACT_MAX_LEN: usize = 64;
/// Longest default user name (Linux's `useradd` limit, `LOGIN_NAME_MAX` - 1 on glibc: 32).
pub const DEFAULT_USER_MAX_LEN: usize = 32;
/// Largest `min_memory_mib`: the largest memory an instance type may have.
pub const MIN_MEMORY_MIB_MAX: i64 = 262_144;
/// Largest `min_disk_gib`: the largest root disk (volume) size.
pub const MIN_DISK_GIB_MAX: i64 = crate::volume::VOLUME_MAX_GIB;

impl ImageFacts {
    /// Checks facts given by a tenant (an import). `os_family` and `os_version` are tokens as
    /// os-release(5) defines `ID` and `VERSION_ID` (lowercase a-z, 0-9, `.`, `_`, `-`); the default
    /// user is a valid Linux user name (`[a-z_][a-z0-9_-]*`, at most 32 characters: what `useradd`
    /// accepts, less the `$` of Samba machine accounts) because `kumo instance ssh` passes it to
    /// `ssh -l`; the minimums lie in the ranges instance types and root disks can have. The
    /// message names the field and says what is allowed.
    pub fn validate(&self) -> Result<(), String> {
        for (field, value) in [("os_family", &self.os_family), ("os_version", &self.os_version)] {
            let Some(v) = value else { continue };
            let ok_char = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-');
            if v.is_empty() || v.len() > OS_FACT_MAX_LEN || !v.chars().all(ok_char) {
                return Err(format!(
                    "{field} must be 1-{OS_FACT_MAX_LEN} characters of a-z, 0-9, '.', '_' and '-', as os-release's \
                     ID and VERSION_ID (e.g. 'debian' and '12'; got {v:?})"
                ));
            }
        }
        if self.os_version.is_some() && self.os_family.is_none() {
            return Err("os_version needs os_family (the distribution it is a version of)".into());
        }
        if let Some(u) = &self.default_user {
            let first_ok = u.starts_with(|c: char| c.is_ascii_lowercase() || c == '_');
            let rest_ok = u.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
            if u.is_empty() || u.len() > DEFAULT_USER_MAX_LEN || !first_ok || !rest_ok {
                return Err(format!(
                    "default_user must be a Linux user name: 1-{DEFAULT_USER_MAX_LEN} characters of a-z, 0-9, '_' and \
                     '-', starting with a letter or '_' (got {u:?})"
                ));
            }
        }
        let ranges = [
            ("min_memory_mib", self.min_memory_mib, MIN_MEMORY_MIB_MAX),
            ("min_disk_gib", self.min_disk_gib, MIN_DISK_GIB_MAX),
        ];
        for (field, value, max) in ranges {
            if let Some(v) = value {
                if !(1..=max).contains(&v) {
                    return Err(format!("{field} must be between 1 and {max} (got {v})"));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(
        family: Option<&str>,
        version: Option<&str>,
        user: Option<&str>,
        mem: Option<i64>,
        disk: Option<i64>,
    ) -> ImageFacts {
        ImageFacts {
            os_family: family.map(String::from),
            os_version: version.map(String::from),
            default_user: user.map(String::from),
            min_memory_mib: mem,
            min_disk_gib: disk,
        }
    }

    #[test]
    fn sensible_facts_and_none_at_all_are_accepted() {
        assert_eq!(ImageFacts::default().validate(), Ok(()));
        for ok in [
            facts(Some("debian"), Some("12"), Some("debian"), Some(512), Some(2)),
            facts(
                Some("opensuse-leap"),
                Some("15.6"),
                Some("_svc-user1"),
                Some(MIN_MEMORY_MIB_MAX),
                Some(MIN_DISK_GIB_MAX),
            ),
            facts(Some("rocky"), None, None, Some(1), None),
            facts(None, None, Some(&"u".repeat(DEFAULT_USER_MAX_LEN)), None, Some(1)),
        ] {
            assert_eq!(ok.validate(), Ok(()), "{ok:?}");
        }
    }

    #[test]
    fn bad_facts_are_refused_naming_the_field() {
        let long = "a".repeat(OS_FACT_MAX_LEN + 1);
        let cases = [
            (facts(Some(""), None, None, None, None), "os_family"),
            (facts(Some("Debian"), None, None, None, None), "os_family"),
            (facts(Some("deb ian"), None, None, None, None), "os_family"),
            (facts(Some(&long), None, None, None, None), "os_family"),
            (facts(Some("debian"), Some("12;rm"), None, None, None), "os_version"),
            (facts(None, Some("12"), None, None, None), "needs os_family"),
            (facts(None, None, Some(""), None, None), "default_user"),
            (facts(None, None, Some("Debian"), None, None), "default_user"),
            (facts(None, None, Some("1abc"), None, None), "default_user"),
            (facts(None, None, Some("-oProxyCommand=x"), None, None), "default_user"),
            (facts(None, None, Some("deb ian"), None, None), "default_user"),
            (facts(None, None, Some("machine$"), None, None), "default_user"),
            (facts(None, None, Some(&"u".repeat(DEFAULT_USER_MAX_LEN + 1)), None, None), "default_user"),
            (facts(None, None, None, Some(0), None), "min_memory_mib"),
            (facts(None, None, None, Some(-512), None), "min_memory_mib"),
            (facts(None, None, None, Some(MIN_MEMORY_MIB_MAX + 1), None), "min_memory_mib"),
            (facts(None, None, None, None, Some(0)), "min_disk_gib"),
            (facts(None, None, None, None, Some(MIN_DISK_GIB_MAX + 1)), "min_disk_gib"),
        ];
        for (f, field) in cases {
            let e = f.validate().expect_err(&format!("{f:?} was accepted"));
            assert!(e.contains(field), "{f:?}: {e}");
        }
    }
}
