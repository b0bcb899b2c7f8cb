//! Forms with repeated fields (multi-selects, the security-group rule editor): the body as
//! ordered (name, value) pairs, since `serde_urlencoded` cannot fill a `Vec` field from
//! repeated keys.

use crate::render::WebError;
use crate::session::CsrfField;
use axum::http::StatusCode;
use serde::Deserialize;

#[derive(Deserialize, Default)]
#[serde(transparent)]
pub struct Fields(pub Vec<(String, String)>);

impl Fields {
    /// The first value of `name` (empty when absent).
    pub fn get(&self, name: &str) -> &str {
        self.0.iter().find(|(k, _)| k == name).map_or("", |(_, v)| v.as_str())
    }

    /// A required field, trimmed: 400 with the field's name when absent or empty.
    pub fn required(&self, name: &str) -> Result<String, WebError> {
        let v = self.get(name).trim();
        if v.is_empty() {
            return Err(WebError::new(StatusCode::BAD_REQUEST, format!("{name} is required")));
        }
        Ok(v.to_string())
    }

    /// An optional field, trimmed: `None` when absent or empty.
    pub fn optional(&self, name: &str) -> Option<String> {
        let v = self.get(name).trim();
        (!v.is_empty()).then(|| v.to_string())
    }

    /// Every non-empty value of `name`, in order.
    pub fn all(&self, name: &str) -> Vec<String> {
        self.0.iter().filter(|(k, v)| k == name && !v.is_empty()).map(|(_, v)| v.clone()).collect()
    }

    /// Whether a checkbox named `name` was ticked.
    pub fn checked(&self, name: &str) -> bool {
        matches!(self.get(name), "on" | "true" | "1")
    }
}

impl CsrfField for Fields {
    fn csrf_field(&self) -> &str {
        self.get("_csrf")
    }
}
