//! The HTTP client of the Kumo API: bearer authentication, URL building, error mapping and
//! pagination. Responses are kept as order-preserving [`Json`] so `--output json` can print exactly
//! what the server sent; commands decode them into `kumo_types` views for tables.

use crate::error::{root_cause, ClientError};
use crate::json::Json;
use crate::tls::Trust;
use kumo_types::page::MAX_LIMIT;
use reqwest::blocking::{Body, RequestBuilder, Response};
use reqwest::header::{HeaderMap, AUTHORIZATION, CONTENT_TYPE};
use reqwest::{Method, Url};
use serde::Serialize;
use std::time::Duration;

/// Time allowed for an ordinary API call. Uploads set their own, much longer limit.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Uploads may be many GiB over a slow link; they are bounded by this rather than by 60 s.
const UPLOAD_TIMEOUT: Duration = Duration::from_secs(24 * 3600);

/// Query parameters: (name, value) pairs, URL-encoded when sent.
pub type Query<'a> = [(&'a str, &'a str)];

pub struct Client {
    http: reqwest::blocking::Client,
    base: Url,
    token: String,
}

impl Client {
    pub fn new(base_url: &str, token: &str) -> Result<Client, ClientError> {
        Client::with_trust(base_url, token, &Trust::default())
    }

    /// A client that also trusts what `trust` says for https (see [`crate::tls`]).
    pub fn with_trust(base_url: &str, token: &str, trust: &Trust) -> Result<Client, ClientError> {
        let bad = |reason: String| ClientError::BadUrl { url: base_url.to_string(), reason };
        let base = Url::parse(base_url).map_err(|e| bad(e.to_string()))?;
        if !matches!(base.scheme(), "http" | "https") || base.cannot_be_a_base() {
            return Err(bad("it must be an http:// or https:// URL".into()));
        }
        let builder = reqwest::blocking::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .user_agent(concat!("kumo-cli/", env!("CARGO_PKG_VERSION")));
        let http = crate::tls::apply(builder, trust)
            .map_err(|reason| ClientError::Trust { reason })?
            .build()
            .map_err(|e| bad(root_cause(&e)))?;
        Ok(Client { http, base, token: token.to_string() })
    }

    /// The server URL, as configured.
    pub fn base_url(&self) -> &str {
        self.base.as_str().trim_end_matches('/')
    }

    /// `base` + `/v1/<segments…>` + `?query`. Segments are percent-encoded, so a name or id can
    /// never escape its place in the path.
    pub fn url(&self, segments: &[&str], query: &Query) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().push("v1").extend(segments);
        }
        url.set_query(None);
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        url
    }

    pub fn get(&self, segments: &[&str], query: &Query) -> Result<Json, ClientError> {
        self.json_call(Method::GET, segments, query, None::<&()>)
    }

    pub fn post<B: Serialize>(&self, segments: &[&str], query: &Query, body: Option<&B>) -> Result<Json, ClientError> {
        self.json_call(Method::POST, segments, query, body)
    }

    pub fn put<B: Serialize>(&self, segments: &[&str], query: &Query, body: &B) -> Result<Json, ClientError> {
        self.json_call(Method::PUT, segments, query, Some(body))
    }

    /// DELETE; `Json::Null` when the server answers 204 No Content.
    pub fn delete(&self, segments: &[&str], query: &Query) -> Result<Json, ClientError> {
        self.json_call(Method::DELETE, segments, query, None::<&()>)
    }

    /// Fetches every page of a list (following `next_page`), or stops once `limit` items are in.
    /// Returns one merged page `{"items": [...], "next_page": …}`; `next_page` is null when the
    /// listing is complete and otherwise continues after the last item returned.
    pub fn list_all(&self, segments: &[&str], query: &Query, limit: Option<usize>) -> Result<Json, ClientError> {
        let mut items: Vec<Json> = Vec::new();
        let mut token: Option<String> = None;
        loop {
            // Ask for no more than is still wanted, so a capped listing ends on a page boundary
            // and its next_page token stays valid.
            let want = match limit {
                Some(n) => n.saturating_sub(items.len()).min(MAX_LIMIT as usize),
                None => MAX_LIMIT as usize,
            };
            if want == 0 {
                break;
            }
            let want_text = want.to_string();
            let mut page_query: Vec<(&str, &str)> = query.to_vec();
            page_query.push(("limit", &want_text));
            if let Some(t) = &token {
                page_query.push(("page_token", t));
            }
            let page = self.get(segments, &page_query)?;
            let page_items = match page.get("items") {
                Some(Json::Array(list)) => list.clone(),
                _ => {
                    return Err(ClientError::Decode {
                        url: self.url(segments, query).to_string(),
                        reason: "a list response has no \"items\" array".into(),
                    })
                }
            };
            items.extend(page_items);
            token = match page.get("next_page") {
                Some(Json::String(t)) if !t.is_empty() => Some(t.clone()),
                _ => None,
            };
            if token.is_none() {
                break;
            }
        }
        let next_page = token.map(Json::String).unwrap_or(Json::Null);
        Ok(Json::Object(vec![("items".to_string(), Json::Array(items)), ("next_page".to_string(), next_page)]))
    }

    /// GET of a non-JSON body (the serial console): the raw bytes and the response headers.
    pub fn get_bytes(&self, segments: &[&str], query: &Query) -> Result<(Vec<u8>, HeaderMap), ClientError> {
        let url = self.url(segments, query);
        let response = self.send(Method::GET, &url, self.http.get(url.clone()))?;
        let headers = response.headers().clone();
        let bytes = response.bytes().map_err(|e| self.transport_error(&Method::GET, &url, &e))?;
        Ok((bytes.to_vec(), headers))
    }

    /// GET of an endless body (server-sent events): the open response, read as it arrives.
    pub fn get_stream(&self, segments: &[&str], query: &Query) -> Result<reqwest::blocking::Response, ClientError> {
        let url = self.url(segments, query);
        // No overall deadline: the stream lasts until the user stops it.
        let request = self.http.get(url.clone()).timeout(std::time::Duration::from_secs(365 * 24 * 3600));
        self.send(Method::GET, &url, request)
    }

    /// POST of a raw body (image import), streamed as it is read.
    pub fn post_stream(&self, segments: &[&str], query: &Query, body: Body) -> Result<Json, ClientError> {
        let url = self.url(segments, query);
        let request = self
            .http
            .post(url.clone())
            .header(CONTENT_TYPE, "application/octet-stream")
            .timeout(UPLOAD_TIMEOUT)
            .body(body);
        let response = self.send(Method::POST, &url, request)?;
        self.read_json(&Method::POST, &url, response)
    }

    fn json_call<B: Serialize>(
        &self,
        method: Method,
        segments: &[&str],
        query: &Query,
        body: Option<&B>,
    ) -> Result<Json, ClientError> {
        let url = self.url(segments, query);
        let mut request = self.http.request(method.clone(), url.clone());
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = self.send(method.clone(), &url, request)?;
        self.read_json(&method, &url, response)
    }

    /// Sends with the bearer token; turns transport failures and 4xx/5xx into `ClientError`.
    fn send(&self, method: Method, url: &Url, request: RequestBuilder) -> Result<Response, ClientError> {
        let response = request
            .header(AUTHORIZATION, format!("Bearer {}", self.token))
            .send()
            .map_err(|e| self.transport_error(&method, url, &e))?;
        let status = response.status();
        if status.is_client_error() || status.is_server_error() {
            let body = response.text().unwrap_or_default();
            return Err(ClientError::from_status(method.as_str(), url.as_str(), status.as_u16(), &body));
        }
        Ok(response)
    }

    fn read_json(&self, method: &Method, url: &Url, response: Response) -> Result<Json, ClientError> {
        let text = response.text().map_err(|e| self.transport_error(method, url, &e))?;
        if text.trim().is_empty() {
            return Ok(Json::Null);
        }
        Json::parse(&text)
            .map_err(|e| ClientError::Decode { url: url.to_string(), reason: format!("the body is not JSON ({e})") })
    }

    fn transport_error(&self, method: &Method, url: &Url, err: &reqwest::Error) -> ClientError {
        if let Some(reason) = crate::tls::tls_failure(err) {
            return ClientError::Tls { base: self.base_url().to_string(), reason };
        }
        let mut reason = root_cause(err);
        // A TLS server's answer to a plain request is a TLS alert, not HTTP.
        if self.base.scheme() == "http" && reason.contains("invalid HTTP version") {
            reason.push_str(" (is the server serving https? try an https:// URL)");
        }
        if err.is_connect() {
            ClientError::Connect { base: self.base_url().to_string(), reason }
        } else if err.is_timeout() {
            ClientError::Transport {
                method: method.to_string(),
                url: url.to_string(),
                reason: format!("timed out ({reason})"),
            }
        } else {
            ClientError::Transport { method: method.to_string(), url: url.to_string(), reason }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testserver::{Reply, TestServer};

    #[test]
    fn urls_encode_segments_and_keep_a_base_path() {
        let c = Client::new("http://h:7400", "t").expect("client");
        let u = c.url(&["instances", "web1", "stop"], &[("project", "demo")]);
        assert_eq!(u.as_str(), "http://h:7400/v1/instances/web1/stop?project=demo");
        let c = Client::new("http://h/kumo/", "t").expect("client");
        assert_eq!(c.url(&["a b/c"], &[]).as_str(), "http://h/kumo/v1/a%20b%2Fc");
        assert_eq!(c.base_url(), "http://h/kumo");
    }

    #[test]
    fn bad_urls_are_refused() {
        assert!(Client::new("not a url", "t").is_err());
        assert!(Client::new("ftp://h", "t").is_err());
    }

    #[test]
    fn sends_the_bearer_token_and_follows_pages() {
        let server = TestServer::start(|req| {
            assert_eq!(req.header("authorization").as_deref(), Some("Bearer secret"));
            let body = match req.query_param("page_token").as_deref() {
                None => r#"{"items":[{"name":"a"},{"name":"b"}],"next_page":"t1"}"#,
                Some("t1") => r#"{"items":[{"name":"c"}],"next_page":null}"#,
                Some(other) => panic!("unexpected token {other}"),
            };
            Reply::json(200, body)
        });
        let c = Client::new(&server.url(), "secret").expect("client");
        let all = c.list_all(&["projects"], &[], None).expect("list").to_value();
        let names: Vec<&str> =
            all["items"].as_array().expect("items").iter().filter_map(|i| i["name"].as_str()).collect();
        assert_eq!(names, ["a", "b", "c"]);
        assert!(all["next_page"].is_null());
        let requests = server.requests();
        assert_eq!(requests.len(), 2);
        assert_eq!(requests[0].query_param("limit").as_deref(), Some("1000"));
    }

    #[test]
    fn a_limit_caps_the_listing_and_keeps_the_continuation_token() {
        let server = TestServer::start(|req| {
            let limit: usize = req.query_param("limit").and_then(|l| l.parse().ok()).unwrap_or(100);
            let items: Vec<String> = (0..limit).map(|i| format!(r#"{{"name":"p{i}"}}"#)).collect();
            Reply::json(200, &format!(r#"{{"items":[{}],"next_page":"more"}}"#, items.join(",")))
        });
        let c = Client::new(&server.url(), "t").expect("client");
        let page = c.list_all(&["projects"], &[], Some(3)).expect("list").to_value();
        assert_eq!(page["items"].as_array().map(Vec::len), Some(3));
        assert_eq!(page["next_page"], "more");
        assert_eq!(server.requests().len(), 1);
    }

    #[test]
    fn api_errors_and_no_content() {
        let server = TestServer::start(|req| match req.method.as_str() {
            "DELETE" => Reply::empty(204),
            _ => Reply::json(409, r#"{"request_id":"r9","error_code":"InvalidState","message":"cannot stop"}"#),
        });
        let c = Client::new(&server.url(), "t").expect("client");
        assert_eq!(c.delete(&["projects", "p"], &[]).expect("delete"), Json::Null);
        let err = c.post(&["instances", "w", "stop"], &[], None::<&()>).expect_err("409");
        assert_eq!(err.to_string(), "cannot stop (InvalidState, request r9)");
    }

    #[test]
    fn connection_refused_names_the_url() {
        // Bind then drop a listener to get a port nobody listens on.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("free port");
        let url = format!("http://127.0.0.1:{port}");
        let c = Client::new(&url, "t").expect("client");
        let err = c.get(&["projects"], &[]).expect_err("refused");
        assert!(matches!(err, ClientError::Connect { .. }), "{err:?}");
        assert!(err.to_string().contains(&url), "{err}");
    }
}
