//! Resource names and name-or-id selectors.
//!
//! Names match `^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$`, are unique per parent, and are never a UUID
//! (a UUID such as "deadbeef-…" can match the pattern, so the parser refuses those explicitly;
//! that keeps every `{name-or-id}` selector unambiguous).

use serde::{Deserialize, Serialize};
use std::fmt;
use utoipa::ToSchema;
use uuid::Uuid;

/// The pattern every [`Name`] matches (what the OpenAPI document says).
pub const NAME_PATTERN: &str = "^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$";

/// The pattern of a `{name-or-id}` selector in the OpenAPI document: a name or a hyphenated UUID.
/// (The server also takes the other UUID spellings `uuid` parses; the document names the usual one.)
pub const NAME_OR_ID_PATTERN: &str =
    "^([a-z]([a-z0-9-]{0,61}[a-z0-9])?|[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})$";

/// A validated resource name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
#[serde(try_from = "String", into = "String")]
#[schema(value_type = String, pattern = "^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$", example = "web1")]
pub struct Name(String);

impl Name {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Checks a candidate name and says precisely what is wrong with it.
    pub fn parse(s: &str) -> Result<Name, String> {
        let mut problems: Vec<String> = Vec::new();
        if s.is_empty() {
            return Err("a name must not be empty; use 1-63 characters of a-z, 0-9 and '-'".into());
        }
        if s.len() > 63 {
            problems.push(format!("it is {} characters long (at most 63)", s.len()));
        }
        let first = s.chars().next().unwrap_or('a');
        if !first.is_ascii_lowercase() {
            problems.push("it must start with a lowercase letter".into());
        }
        if s.ends_with('-') {
            problems.push("it must not end with '-'".into());
        }
        if s.chars().any(|c| c.is_ascii_uppercase()) {
            problems.push("it has uppercase letters".into());
        }
        let mut bad: Vec<char> = s
            .chars()
            .filter(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-' || c.is_ascii_uppercase()))
            .collect();
        bad.sort();
        bad.dedup();
        if !bad.is_empty() {
            let list: Vec<String> = bad.iter().map(|c| format!("'{c}'")).collect();
            problems.push(format!("it contains {}", list.join(", ")));
        }
        if Uuid::parse_str(s).is_ok() {
            problems.push("it looks like a UUID".into());
        }
        if problems.is_empty() {
            Ok(Name(s.to_string()))
        } else {
            Err(format!("name '{s}' must match ^[a-z]([a-z0-9-]{{0,61}}[a-z0-9])?$ ({})", problems.join("; ")))
        }
    }
}

impl TryFrom<String> for Name {
    type Error = String;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Name::parse(&s)
    }
}

impl From<Name> for String {
    fn from(n: Name) -> String {
        n.0
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A path or query selector: either a resource's name or its id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NameOrId {
    Id(Uuid),
    Name(Name),
}

impl NameOrId {
    pub fn parse(s: &str) -> Result<NameOrId, String> {
        if let Ok(id) = Uuid::parse_str(s) {
            return Ok(NameOrId::Id(id));
        }
        Name::parse(s).map(NameOrId::Name)
    }
}

impl fmt::Display for NameOrId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NameOrId::Id(id) => write!(f, "{id}"),
            NameOrId::Name(n) => write!(f, "{n}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_good_names() {
        for n in ["a", "web1", "my-db-2", &format!("a{}", "b".repeat(62))] {
            assert!(Name::parse(n).is_ok(), "{n} should be accepted");
        }
    }

    #[test]
    fn rejects_bad_names_with_reasons() {
        let e = Name::parse("Web_1").unwrap_err();
        assert!(e.contains("uppercase") && e.contains("'_'"), "{e}");
        assert!(Name::parse("1abc").unwrap_err().contains("start with a lowercase letter"));
        assert!(Name::parse("abc-").unwrap_err().contains("end with '-'"));
        assert!(Name::parse(&"a".repeat(64)).unwrap_err().contains("64 characters"));
        assert!(Name::parse("").is_err());
    }

    #[test]
    fn name_or_id_prefers_uuid() {
        let id = Uuid::new_v4();
        assert_eq!(NameOrId::parse(&id.to_string()).unwrap(), NameOrId::Id(id));
        assert!(matches!(NameOrId::parse("web1").unwrap(), NameOrId::Name(_)));
    }
}
