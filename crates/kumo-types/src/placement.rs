//! Placement groups: how the scheduler places a project's instances relative to each other.

use crate::{Name, PlacementGroupId};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// How the instances of a placement group are placed relative to each other.
///
/// - `spread` (soft): on the hosts with the fewest members of the group first;
/// - `pack` (soft): on the hosts with the most members of the group first;
/// - `anti-affinity` (hard): never two members on one host (refused when no host is left);
/// - `affinity` (hard): every member on the host(s) the first one went to (refused when full).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum PlacementPolicy {
    Spread,
    Pack,
    AntiAffinity,
    Affinity,
}

impl PlacementPolicy {
    pub const ALL: [PlacementPolicy; 4] =
        [PlacementPolicy::Spread, PlacementPolicy::Pack, PlacementPolicy::AntiAffinity, PlacementPolicy::Affinity];

    pub fn as_str(self) -> &'static str {
        match self {
            PlacementPolicy::Spread => "spread",
            PlacementPolicy::Pack => "pack",
            PlacementPolicy::AntiAffinity => "anti-affinity",
            PlacementPolicy::Affinity => "affinity",
        }
    }

    pub fn parse(s: &str) -> Option<PlacementPolicy> {
        Self::ALL.into_iter().find(|p| p.as_str() == s)
    }

    /// Whether the scheduler refuses rather than bends the policy.
    pub fn is_hard(self) -> bool {
        matches!(self, PlacementPolicy::AntiAffinity | PlacementPolicy::Affinity)
    }
}

impl std::fmt::Display for PlacementPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// At most this many placement groups per project.
pub const PLACEMENT_GROUPS_PER_PROJECT: i64 = 100;

/// A placement group of a project.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PlacementGroupView {
    /// Unique id (UUID).
    #[schema(value_type = Uuid)]
    pub id: PlacementGroupId,
    /// Name, unique within the project.
    pub name: String,
    /// Free-form description.
    pub description: String,
    /// When it was created.
    pub time_created: chrono::DateTime<chrono::Utc>,
    /// When it was last changed.
    pub time_modified: chrono::DateTime<chrono::Utc>,
    /// Name of the project it belongs to.
    pub project: String,
    /// How its instances are placed.
    pub policy: PlacementPolicy,
    /// Its live instances.
    pub instances: i64,
}

/// Parameters to create a placement group.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PlacementGroupCreate {
    /// Name, unique within the project.
    pub name: Name,
    /// Free-form description.
    #[serde(default)]
    #[schema(max_length = 512)]
    pub description: String,
    /// How its instances are placed.
    pub policy: PlacementPolicy,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_are_kebab_case_on_the_wire() {
        for p in PlacementPolicy::ALL {
            assert_eq!(serde_json::to_string(&p).unwrap(), format!("\"{}\"", p.as_str()));
            assert_eq!(PlacementPolicy::parse(p.as_str()), Some(p));
        }
        assert_eq!(PlacementPolicy::parse("anti_affinity"), None);
    }
}
