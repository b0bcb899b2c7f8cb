//! Object storage buckets: create, list and view them with what they hold, switch their canned
//! ACL (`public-read` or private), delete them when empty. Objects are reached through the S3
//! endpoint (`kumo-s3`), which calls [`create`], [`update`] and [`delete`] for `CreateBucket`,
//! `PutBucketAcl` and `DeleteBucket`: one place decides who may do each, and audits it.
//!
//! Requests to the S3 endpoint are counted here ([`Requests`]) and billed per 1,000.

use super::read;
use super::vpcs::event;
use crate::context::{Access, OpContext};
use crate::error::{ApiError, ApiResult};
use crate::App;
use kumo_types::bucket::valid_bucket_name;
use kumo_types::page::PageRequest;
use kumo_types::{BucketCreate, BucketUpdate, BucketView, ResultsPage};

pub async fn list(
    app: &App,
    ctx: &OpContext,
    project: Option<&str>,
    page: &PageRequest,
) -> ApiResult<ResultsPage<BucketView>> {
    let (p, mut found) = {
        let mut conn = read(app).await?;
        let p = super::project(&mut conn, ctx, project, Access::Read).await?;
        let found = kumo_store::objects::bucket_views(&mut conn, p.id, page).await?;
        (p, found)
    };
    let costs = super::billing::bucket_costs(app, p.id).await?;
    for b in &mut found.items {
        b.cost_month_to_date = costs.get(&b.id.get()).copied().unwrap_or(0);
    }
    Ok(found)
}

pub async fn view(app: &App, ctx: &OpContext, project: Option<&str>, bucket: &str) -> ApiResult<BucketView> {
    let (p, mut b) = {
        let mut conn = read(app).await?;
        let p = super::project(&mut conn, ctx, project, Access::Read).await?;
        let b = kumo_store::objects::bucket_view(&mut conn, p.id, bucket)
            .await?
            .ok_or_else(|| ApiError::not_found("bucket", bucket))?;
        (p, b)
    };
    b.cost_month_to_date = super::billing::bucket_costs(app, p.id).await?.get(&b.id.get()).copied().unwrap_or(0);
    Ok(b)
}

/// Makes a bucket public-read or private (the project's owners), or sets its versioning
/// (collaborators and owners, as S3's PutBucketVersioning: the S3 endpoint calls this).
pub async fn update(
    app: &App,
    ctx: &OpContext,
    project: Option<&str>,
    bucket: &str,
    u: &BucketUpdate,
) -> ApiResult<BucketView> {
    let mut tx = app.store.begin().await?;
    let p = super::project(&mut tx, ctx, project, Access::Read).await?;
    let b = kumo_store::objects::bucket_view(&mut tx, p.id, bucket)
        .await?
        .ok_or_else(|| ApiError::not_found("bucket", bucket))?;
    if u.public_read.is_none() && u.versioning.is_none() {
        return Err(ApiError::invalid("nothing to change: give public_read or versioning"));
    }
    // Every check before any change.
    if u.public_read.is_some() {
        ctx.authorize_project(p.id, &p.name, Access::Manage)?;
    }
    if u.versioning.is_some() {
        ctx.authorize_project(p.id, &p.name, Access::Write)?;
    }
    let cause = ctx.cause("bucket_update");
    let mut events = Vec::new();
    if let Some(public_read) = u.public_read.filter(|r| *r != b.public_read) {
        kumo_store::objects::bucket_set_public_read(&mut tx, b.id, public_read).await?;
        let kind = if public_read { "made public-read" } else { "made private" };
        events.push(kumo_store::events::record(&mut tx, &event(p.id, "bucket", b.id, &b.name, kind, &cause)).await?);
    }
    if let Some(v) = u.versioning {
        let (to, kind) = match v {
            kumo_types::BucketVersioning::Enabled => (kumo_store::objects::Versioning::Enabled, "versioning enabled"),
            kumo_types::BucketVersioning::Suspended => {
                (kumo_store::objects::Versioning::Suspended, "versioning suspended")
            }
        };
        if to.status().map(str::to_lowercase) != b.versioning {
            kumo_store::objects::bucket_set_versioning(&mut tx, b.id, to).await?;
            events
                .push(kumo_store::events::record(&mut tx, &event(p.id, "bucket", b.id, &b.name, kind, &cause)).await?);
        }
    }
    let v = kumo_store::objects::bucket_view(&mut tx, p.id, bucket)
        .await?
        .ok_or_else(|| ApiError::not_found("bucket", bucket))?;
    tx.commit().await.map_err(ApiError::internal)?;
    for ev in events {
        app.events.publish(Some(p.id), Some(&p.name), ev);
    }
    Ok(v)
}

/// Creates a bucket in a project (collaborators and owners). A name taken anywhere on the endpoint
/// is 409, whoever has it.
pub async fn create(app: &App, ctx: &OpContext, project: Option<&str>, c: &BucketCreate) -> ApiResult<BucketView> {
    if !valid_bucket_name(&c.name) {
        return Err(ApiError::invalid(format!(
            "'{}' is not a valid bucket name: 3-63 lower-case letters, digits, dots and hyphens, beginning and ending with a letter or digit",
            c.name
        )));
    }
    let mut tx = app.store.begin().await?;
    let p = super::project(&mut tx, ctx, project, Access::Write).await?;
    let b = match kumo_store::objects::bucket_insert(&mut tx, p.id, &c.name, c.public_read).await {
        Ok(b) => b,
        Err(kumo_store::StoreError::Conflict(_)) => {
            return Err(ApiError::new(
                kumo_types::ErrorCode::ObjectAlreadyExists,
                format!("the bucket name '{}' is taken (names are unique on the endpoint)", c.name),
            ))
        }
        Err(e) => return Err(e.into()),
    };
    let cause = ctx.cause("bucket_create");
    let mut created = event(p.id, "bucket", b.id, &b.name, "created", &cause);
    created.detail = Some(serde_json::json!({"bytes_stored": 0}).to_string());
    let ev = kumo_store::events::record(&mut tx, &created).await?;
    let v = kumo_store::objects::bucket_view(&mut tx, p.id, &b.name)
        .await?
        .ok_or_else(|| ApiError::internal("bucket vanished"))?;
    tx.commit().await.map_err(ApiError::internal)?;
    app.events.publish(Some(p.id), Some(&p.name), ev);
    Ok(v)
}

/// Deletes an empty bucket (409 when it holds objects); its uploads in progress go with it.
pub async fn delete(app: &App, ctx: &OpContext, project: Option<&str>, bucket: &str) -> ApiResult<()> {
    let mut tx = app.store.begin().await?;
    let p = super::project(&mut tx, ctx, project, Access::Read).await?;
    let b = kumo_store::objects::bucket_view(&mut tx, p.id, bucket)
        .await?
        .ok_or_else(|| ApiError::not_found("bucket", bucket))?;
    ctx.authorize_project(p.id, &p.name, Access::Write)?;
    let Some(parts) = kumo_store::objects::bucket_delete(&mut tx, b.id).await? else {
        return Err(ApiError::conflict(if b.objects > 0 {
            format!("bucket '{bucket}' is not empty ({} objects): delete its objects first", b.objects)
        } else {
            format!(
                "bucket '{bucket}' is not empty: it holds noncurrent versions or delete markers (it is versioned); \
                 delete them by version id first (S3 ListObjectVersions, DeleteObject with versionId)"
            )
        }));
    };
    let release = kumo_store::quotas::QuotaAmounts { object_bytes: parts as i64, ..Default::default() };
    kumo_store::quotas::release(&mut tx, p.id, release).await?;
    let cause = ctx.cause("bucket_delete");
    let ev = kumo_store::events::record(&mut tx, &event(p.id, "bucket", b.id, &b.name, "deleted", &cause)).await?;
    tx.commit().await.map_err(ApiError::internal)?;
    app.events.publish(Some(p.id), Some(&p.name), ev);
    Ok(())
}

/// Accounts a change of `delta` bytes in a bucket's objects and upload parts, in the caller's
/// transaction. Metering bills object storage in whole GiB (rounded up, as backups), so a
/// `resized` event with `bytes_stored` is recorded only when that whole number changes: one event
/// per GiB crossed, not one per PUT.
pub async fn account(
    tx: &mut kumo_store::Conn,
    project_id: kumo_types::ProjectId,
    bucket: (kumo_types::BucketId, &str),
    delta: i64,
    cause: &str,
) -> ApiResult<()> {
    if delta == 0 {
        return Ok(());
    }
    let (before, after) = kumo_store::objects::bucket_add_bytes(tx, bucket.0, delta).await?;
    let gib = |b: u64| b.div_ceil(1 << 30);
    if gib(before) != gib(after) {
        let mut e = event(project_id, "bucket", bucket.0, bucket.1, "resized", cause);
        e.detail = Some(serde_json::json!({"bytes_stored": after}).to_string());
        kumo_store::events::record(tx, &e).await?;
    }
    Ok(())
}

/// The two classes of S3 requests, priced apart (kinds `object_write_requests` and
/// `object_read_requests`, per 1,000).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RequestClass {
    /// Requests that may change something (PUT, COPY, POST, DELETE, configuration).
    Write,
    /// The others (GET, HEAD, listings).
    Read,
}

impl RequestClass {
    pub fn as_str(self) -> &'static str {
        match self {
            RequestClass::Write => "write",
            RequestClass::Read => "read",
        }
    }
}

/// Requests to the S3 endpoint counted in memory per (bucket, hour, class) since the last flush
/// (every few seconds, by [`crate::background::requests`], and when kumod stops). Counting in
/// memory keeps a store write off every request; a crash loses at most the counts since the last
/// flush, never bills a request twice.
#[derive(Default)]
pub struct Requests(std::sync::Mutex<std::collections::HashMap<(kumo_types::BucketId, i64, RequestClass), u64>>);

impl Requests {
    /// Counts one request (an authorised one: refused requests are not billed).
    pub fn count(&self, bucket: kumo_types::BucketId, class: RequestClass) {
        let hour = chrono::Utc::now().timestamp().div_euclid(3600) * 3600;
        let mut m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        *m.entry((bucket, hour, class)).or_default() += 1;
    }

    fn take(&self) -> std::collections::HashMap<(kumo_types::BucketId, i64, RequestClass), u64> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|e| e.into_inner()))
    }

    fn give_back(&self, counts: std::collections::HashMap<(kumo_types::BucketId, i64, RequestClass), u64>) {
        let mut m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        for (k, n) in counts {
            *m.entry(k).or_default() += n;
        }
    }

    /// Adds the counts to the store in one transaction (given back to be tried again when that
    /// fails): the requests flushed.
    pub async fn flush(&self, store: &kumo_store::Store) -> Result<u64, kumo_store::StoreError> {
        let counts = self.take();
        if counts.is_empty() {
            return Ok(0);
        }
        let total = counts.values().sum();
        let written = async {
            let mut tx = store.begin().await?;
            for ((bucket, hour, class), n) in &counts {
                let hour = chrono::DateTime::from_timestamp(*hour, 0).unwrap_or_default();
                kumo_store::objects::requests_add(&mut tx, *bucket, hour, class.as_str(), *n).await?;
            }
            tx.commit().await.map_err(kumo_store::StoreError::from)
        }
        .await;
        match written {
            Ok(()) => Ok(total),
            Err(e) => {
                self.give_back(counts);
                Err(e)
            }
        }
    }
}
