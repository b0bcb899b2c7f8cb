//! Keyset pagination: `limit`, `page_token`, `sort_by` in; `{items, next_page}` out.
//! The token is opaque to clients and stateless on the server: it encodes the sort order and the
//! sort key of the last item returned.

use base64::Engine;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

pub const DEFAULT_LIMIT: u32 = 100;
pub const MAX_LIMIT: u32 = 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SortBy {
    /// By name, A to Z (the default).
    #[default]
    NameAscending,
    /// By name, Z to A.
    NameDescending,
    /// By id (creation order: ids are UUIDv7).
    IdAscending,
}

/// Query parameters of every list operation.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageParams {
    /// Maximum number of items to return (default 100, at most 1000).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
    /// Token from a previous page's `next_page`, to continue the listing.
    pub page_token: Option<String>,
    /// Sort order (name_ascending, name_descending, id_ascending).
    pub sort_by: Option<SortBy>,
}

/// Decoded page token: the sort order and the key of the last item of the previous page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PageToken {
    pub sort_by: SortBy,
    pub last: String,
}

impl PageToken {
    pub fn encode(&self) -> String {
        let json = serde_json::to_vec(self).unwrap_or_default();
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json)
    }

    pub fn decode(s: &str) -> Result<PageToken, String> {
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(s)
            .map_err(|_| "page_token is not a token returned by this API".to_string())?;
        serde_json::from_slice(&bytes).map_err(|_| "page_token is not a token returned by this API".to_string())
    }
}

/// A validated page request, ready for the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageRequest {
    pub limit: u32,
    pub sort_by: SortBy,
    /// Key (name or id) after which to continue.
    pub after: Option<String>,
}

impl PageParams {
    pub fn validate(&self) -> Result<PageRequest, String> {
        let limit = self.limit.unwrap_or(DEFAULT_LIMIT);
        if limit == 0 || limit > MAX_LIMIT {
            return Err(format!("limit must be between 1 and {MAX_LIMIT} (got {limit})"));
        }
        let mut sort_by = self.sort_by.unwrap_or_default();
        let mut after = None;
        if let Some(t) = &self.page_token {
            let token = PageToken::decode(t)?;
            if self.sort_by.is_some() && self.sort_by != Some(token.sort_by) {
                return Err("sort_by differs from the one the page_token was made with".into());
            }
            sort_by = token.sort_by;
            after = Some(token.last);
        }
        Ok(PageRequest { limit, sort_by, after })
    }
}

/// One page of a list.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ResultsPage<T> {
    /// The items of this page.
    pub items: Vec<T>,
    /// Token for the next page, or null when this is the last one.
    pub next_page: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_roundtrip_and_limits() {
        let t = PageToken { sort_by: SortBy::NameDescending, last: "web9".into() };
        assert_eq!(PageToken::decode(&t.encode()).unwrap(), t);
        assert!(PageToken::decode("!!").is_err());
        let p = PageParams { limit: Some(1001), ..Default::default() };
        assert!(p.validate().unwrap_err().contains("1001"));
        let p = PageParams { page_token: Some(t.encode()), ..Default::default() };
        let r = p.validate().unwrap();
        assert_eq!(r.sort_by, SortBy::NameDescending);
        assert_eq!(r.after.as_deref(), Some("web9"));
    }
}
