//! Object storage pages: the project's buckets (create, delete, the public-read switch, objects,
//! size and month-to-date cost) and one bucket's objects, browsed by prefix like folders (upload
//! with a progress bar, download, delete).
//!
//! Buckets go through `kumo_control::app::buckets`, as the REST API's handlers do. Objects exist
//! only behind the S3 endpoint, so they go through [`kumo_s3::console`], which runs the S3
//! operations' own code (quota, checksums, durability, audit) for a dashboard session. Uploads
//! are raw request bodies streamed into the store (the page's script sends each file with an XHR
//! to show progress, as the image import does); downloads stream the object back.

use crate::form::Fields;
use crate::instances::{go, page_of};
use crate::render::{self, page, WebError};
use crate::session::Session;
use axum::body::Body;
use axum::extract::rejection::FormRejection;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Form, Json};
use kumo_control::app::{buckets, projects};
use kumo_control::App;
use kumo_s3::console::{ConsoleBucket, DELIMITER, MAX_PAGE};
use kumo_types::{BucketCreate, BucketUpdate};
use minijinja::context;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// S3's rule for new bucket names as an HTML `pattern` (the API checks it too, and also refuses
/// names shaped like an IP address).
pub const BUCKET_PATTERN: &str = r"[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]";
pub const BUCKET_RULE: &str =
    "3 to 63 lowercase letters, digits, '.' and '-', starting and ending with a letter or digit";

pub async fn list(State(app): State<Arc<App>>, s: Session, Path(p): Path<String>) -> Result<Response, WebError> {
    let project = projects::view(&app, &s.ctx, &p).await?;
    // Each with its month-to-date cost (the API's, as `kumo bucket list` shows it).
    let rows = buckets::list(&app, &s.ctx, Some(&p), &page_of(1000, None)?).await?.items;
    page(
        &s,
        "buckets.html",
        context! {
            project => project, buckets => rows, section => "buckets",
            bucket_pattern => BUCKET_PATTERN, bucket_rule => BUCKET_RULE,
        },
    )
}

fn back(p: &str) -> String {
    format!("/projects/{}/buckets", render::urlencode(p))
}

/// The browse page of `prefix` in a bucket.
fn folder_url(p: &str, b: &str, prefix: &str) -> String {
    let base = format!("{}/{}", back(p), render::urlencode(b));
    if prefix.is_empty() {
        base
    } else {
        format!("{base}?prefix={}", render::urlencode_component(prefix))
    }
}

pub async fn create(
    State(app): State<Arc<App>>,
    s: Session,
    Path(p): Path<String>,
    headers: HeaderMap,
    form: Result<Form<Fields>, FormRejection>,
) -> Result<Response, WebError> {
    let f = s.checked_form(&headers, form)?;
    let c = BucketCreate { name: f.get("name").trim().to_string(), public_read: f.checked("public_read") };
    buckets::create(&app, &s.ctx, Some(&p), &c).await?;
    Ok(render::with_actor(go(&headers, &back(&p)), &s))
}

/// Bucket actions: `public-read` (field `public_read`: `true` or `false`), `delete` (the API's
/// "not empty" error when it holds objects), `delete-object` (field `key`; back to field
/// `prefix`).
pub async fn act(
    State(app): State<Arc<App>>,
    s: Session,
    Path((p, b, action)): Path<(String, String, String)>,
    headers: HeaderMap,
    form: Result<Form<Fields>, FormRejection>,
) -> Result<Response, WebError> {
    let f = s.checked_form(&headers, form)?;
    let to = match action.as_str() {
        "public-read" => {
            let u = BucketUpdate { public_read: Some(f.get("public_read") == "true"), ..Default::default() };
            buckets::update(&app, &s.ctx, Some(&p), &b, &u).await?;
            back(&p)
        }
        "delete" => {
            buckets::delete(&app, &s.ctx, Some(&p), &b).await?;
            back(&p)
        }
        "delete-object" => {
            let key = f.get("key");
            if key.is_empty() {
                return Err(WebError::new(StatusCode::BAD_REQUEST, "key is required"));
            }
            ConsoleBucket::open(app, &s.ctx, &p, &b).await?.delete(key).await?;
            folder_url(&p, &b, f.get("prefix"))
        }
        other => return Err(WebError::new(StatusCode::NOT_FOUND, format!("no bucket action '{other}'"))),
    };
    Ok(render::with_actor(go(&headers, &to), &s))
}

#[derive(Deserialize, Default)]
pub struct BrowseQuery {
    #[serde(default)]
    prefix: String,
    /// Start after this key or folder (the "next page" link).
    after: Option<String>,
    /// Entries per page (1 to 1,000; default 1,000).
    limit: Option<usize>,
}

/// One step of the breadcrumb: a folder's name and the prefix it opens.
#[derive(Serialize)]
struct Crumb {
    name: String,
    href: String,
}

/// The breadcrumb of `prefix`: `a/b/` gives `a` (opening `a/`) then `b` (opening `a/b/`).
fn crumbs(p: &str, b: &str, prefix: &str) -> Vec<Crumb> {
    let mut out = Vec::new();
    let mut end = 0;
    while let Some(i) = prefix[end..].find(DELIMITER) {
        let next = end + i + DELIMITER.len();
        out.push(Crumb { name: prefix[end..end + i].to_string(), href: folder_url(p, b, &prefix[..next]) });
        end = next;
    }
    out
}

/// A row of the browse page: a folder or an object, named relative to the prefix.
#[derive(Serialize)]
struct Entry {
    name: String,
    key: String,
    href: String,
    size: Option<u64>,
    etag: Option<String>,
    last_modified: Option<String>,
}

pub async fn browse(
    State(app): State<Arc<App>>,
    s: Session,
    Path((p, b)): Path<(String, String)>,
    Query(q): Query<BrowseQuery>,
) -> Result<Response, WebError> {
    let project = projects::view(&app, &s.ctx, &p).await?;
    let bucket = ConsoleBucket::open(app, &s.ctx, &p, &b).await?;
    let limit = q.limit.unwrap_or(MAX_PAGE);
    let folder = bucket.folder(&q.prefix, q.after.as_deref(), limit).await?;
    let relative = |key: &str| key.strip_prefix(folder.prefix.as_str()).unwrap_or(key).to_string();
    let folders: Vec<Entry> = folder
        .folders
        .iter()
        .map(|f| Entry {
            name: relative(f),
            key: f.clone(),
            href: folder_url(&p, &b, f),
            size: None,
            etag: None,
            last_modified: None,
        })
        .collect();
    let objects: Vec<Entry> = folder
        .objects
        .iter()
        .map(|o| Entry {
            name: relative(&o.key),
            key: o.key.clone(),
            href: download_url(&p, &b, &o.key),
            size: Some(o.size),
            etag: Some(o.etag.clone()),
            last_modified: Some(o.last_modified.to_rfc3339()),
        })
        .collect();
    let next_page = folder.next_after.as_deref().map(|after| {
        let mut url = format!("{}?prefix={}", folder_url(&p, &b, ""), render::urlencode_component(&folder.prefix));
        url.push_str(&format!("&after={}", render::urlencode_component(after)));
        if q.limit.is_some() {
            url.push_str(&format!("&limit={limit}"));
        }
        url
    });
    page(
        &s,
        "bucket.html",
        context! {
            project => project, section => "buckets",
            bucket => context! { name => bucket.name(), public_read => bucket.public_read() },
            bucket_url => folder_url(&p, &b, ""),
            prefix => folder.prefix, crumbs => crumbs(&p, &b, &q.prefix),
            folders => folders, objects => objects, next_page => next_page,
            upload_url => format!("{}/{}/upload", back(&p), render::urlencode(&b)),
        },
    )
}

fn download_url(p: &str, b: &str, key: &str) -> String {
    format!("{}/{}/download?key={}", back(p), render::urlencode(b), render::urlencode_component(key))
}

#[derive(Deserialize)]
pub struct KeyQuery {
    key: String,
}

/// Stores the raw request body as the object `key` (the page's XHR sends one file per request,
/// with its type as Content-Type). The body is streamed into the store, never held whole; the
/// answer is JSON: what was stored (201), or the API's error body.
pub async fn upload(
    State(app): State<Arc<App>>,
    s: Session,
    Path((p, b)): Path<(String, String)>,
    Query(q): Query<KeyQuery>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    // A raw body: the CSRF token comes in the X-CSRF-Token header.
    if let Err(e) = s.check_csrf(&headers, None) {
        return e.into_response();
    }
    let header_str = |name| headers.get(name).and_then(|v: &HeaderValue| v.to_str().ok());
    let content_type = header_str(header::CONTENT_TYPE).map(str::to_string);
    let length = header_str(header::CONTENT_LENGTH).and_then(|v| v.parse().ok());
    let stored = match ConsoleBucket::open(app, &s.ctx, &p, &b).await {
        Ok(bucket) => bucket.put(&q.key, content_type, length, body.into_data_stream()).await,
        Err(e) => Err(e),
    };
    let r = match stored {
        Ok(stored) => (StatusCode::CREATED, Json(stored)).into_response(),
        Err(e) => e.into_response(),
    };
    render::with_actor(r, &s)
}

/// Streams the object `key` as a download: its stored Content-Type (else
/// `application/octet-stream`) and an `attachment` disposition naming the key's last segment.
pub async fn download(
    State(app): State<Arc<App>>,
    s: Session,
    Path((p, b)): Path<(String, String)>,
    Query(q): Query<KeyQuery>,
) -> Result<Response, WebError> {
    let bucket = ConsoleBucket::open(app, &s.ctx, &p, &b).await?;
    let (info, body) = bucket.get(&q.key).await?;
    let content_type = info
        .content_type
        .as_deref()
        .and_then(|c| HeaderValue::from_str(c).ok())
        .unwrap_or(HeaderValue::from_static("application/octet-stream"));
    let mut r = Body::from_stream(body).into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, content_type);
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(info.size));
    h.insert(header::ETAG, HeaderValue::from_str(&format!("\"{}\"", info.etag)).map_err(WebError::internal)?);
    h.insert(header::CONTENT_DISPOSITION, attachment(&info.key));
    // The bytes are the tenant's: never let a browser render them as a page of this origin.
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static("sandbox"));
    Ok(render::with_actor(r, &s))
}

/// `attachment` with the key's last segment as the file name: an ASCII fallback (`filename`)
/// and the exact name in UTF-8 (`filename*`, RFC 6266 / RFC 8187).
fn attachment(key: &str) -> HeaderValue {
    let name = key.rsplit('/').find(|s| !s.is_empty()).unwrap_or("download");
    let ascii: String = name
        .chars()
        .map(|c| if (c.is_ascii_graphic() && c != '"' && c != '\\') || c == ' ' { c } else { '_' })
        .collect();
    let v = format!("attachment; filename=\"{ascii}\"; filename*=UTF-8''{}", render::urlencode_component(name));
    HeaderValue::from_str(&v).unwrap_or(HeaderValue::from_static("attachment"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn breadcrumb_opens_each_parent_folder() {
        let c = crumbs("demo", "photos", "2026/a b+/");
        let got: Vec<(&str, &str)> = c.iter().map(|c| (c.name.as_str(), c.href.as_str())).collect();
        assert_eq!(
            got,
            [
                ("2026", "/projects/demo/buckets/photos?prefix=2026%2F"),
                ("a b+", "/projects/demo/buckets/photos?prefix=2026%2Fa%20b%2B%2F"),
            ]
        );
        assert!(crumbs("demo", "photos", "").is_empty());
    }

    #[test]
    fn keys_are_encoded_in_links_and_file_names() {
        assert_eq!(
            download_url("demo", "photos", "a/b c+ü.txt"),
            "/projects/demo/buckets/photos/download?key=a%2Fb%20c%2B%C3%BC.txt"
        );
        let d = attachment("docs/r\"é sumé.pdf");
        assert_eq!(
            d.to_str().unwrap_or_default(),
            "attachment; filename=\"r__ sum_.pdf\"; filename*=UTF-8''r%22%C3%A9%20sum%C3%A9.pdf"
        );
        assert_eq!(
            attachment("dir/").to_str().unwrap_or_default(),
            "attachment; filename=\"dir\"; filename*=UTF-8''dir"
        );
    }
}
