//! S3 access keys: the credentials of the object storage endpoint (`kumo-s3`).
//!
//! A key belongs to the user who made it and is scoped to one project: a request signed with it
//! acts as that user with their role in that project *at the time of the request* (a viewer's key
//! reads, a collaborator's writes; a user who leaves the project or is deleted takes their keys'
//! rights with them). Any member may make keys for themselves; the key's user or the project's
//! owners may delete it, and a deleted key stops working at once (no cache holds it).
//!
//! SigV4 needs the secret itself to check a signature, so it is kept sealed under the master key
//! (ChaCha20-Poly1305, the access key id as associated data: a sealed secret moved onto another
//! key does not open) and shown in clear only once, in the answer to its creation.

use super::vpcs::event;
use super::{read, selector};
use crate::context::{Access, Actor, OpContext, UserRef};
use crate::error::{already_exists, ApiError, ApiResult};
use crate::App;
use kumo_store::access_keys::NewAccessKey;
use kumo_types::access_key::{ACCESS_KEY_ID_LEN, SECRET_ACCESS_KEY_LEN};
use kumo_types::page::PageRequest;
use kumo_types::{AccessKeyCreate, AccessKeyCreated, AccessKeyView, ErrorCode, ProjectId, ResultsPage, TokenId};
use rand::Rng;
use std::collections::BTreeMap;
use std::sync::Arc;

pub async fn list(
    app: &App,
    ctx: &OpContext,
    project: Option<&str>,
    page: &PageRequest,
) -> ApiResult<ResultsPage<AccessKeyView>> {
    let mut conn = read(app).await?;
    let p = super::project(&mut conn, ctx, project, Access::Read).await?;
    Ok(kumo_store::access_keys::list(&mut conn, p.id, page).await?)
}

pub async fn view(app: &App, ctx: &OpContext, project: Option<&str>, key: &str) -> ApiResult<AccessKeyView> {
    let mut conn = read(app).await?;
    let p = super::project(&mut conn, ctx, project, Access::Read).await?;
    let sel = selector("access key", key)?;
    let k = kumo_store::access_keys::get(&mut conn, p.id, &sel).await?;
    Ok(k.ok_or_else(|| ApiError::not_found("access key", key))?.view)
}

/// Random characters of `alphabet`.
fn random_text(alphabet: &[u8], len: usize) -> String {
    let mut rng = rand::thread_rng();
    (0..len).map(|_| alphabet[rng.gen_range(0..alphabet.len())] as char).collect()
}

/// A new access key id: `KUMO` and 16 characters of base32 (upper case, as AWS's `AKIA…`).
fn new_access_key_id() -> String {
    format!("KUMO{}", random_text(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", ACCESS_KEY_ID_LEN - 4))
}

/// A new secret: 40 letters and digits (238 bits; no characters a shell or URL would mangle).
fn new_secret() -> String {
    random_text(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789", SECRET_ACCESS_KEY_LEN)
}

pub async fn create(
    app: &App,
    ctx: &OpContext,
    project: Option<&str>,
    c: &AccessKeyCreate,
) -> ApiResult<AccessKeyCreated> {
    super::check_description(&c.description)?;
    let user = ctx.actor.user.as_ref().ok_or_else(|| {
        ApiError::invalid(
            "access keys belong to a user and the operator token has none: log in as a user (kumo login) to make one",
        )
    })?;
    let access_key_id = new_access_key_id();
    let secret = new_secret();
    let sealed = app
        .config
        .master_key
        .seal(access_key_id.as_bytes(), secret.as_bytes())
        .map_err(|e| ApiError::internal(format!("seal an access key's secret: {e}")))?;
    let mut tx = app.store.begin().await?;
    // Any member may make keys for themselves: the key can do no more than their role allows.
    let p = super::project(&mut tx, ctx, project, Access::Read).await?;
    let new = NewAccessKey {
        project_id: p.id,
        user_id: user.id,
        name: c.name.as_str(),
        description: &c.description,
        access_key_id: &access_key_id,
        secret_sealed: &hex::encode(sealed),
    };
    let k =
        kumo_store::access_keys::insert(&mut tx, &new).await.map_err(already_exists("access key", c.name.as_str()))?;
    let cause = ctx.cause("access_key_create");
    let ev =
        kumo_store::events::record(&mut tx, &event(p.id, "access_key", k.view.id, &k.view.name, "created", &cause))
            .await?;
    tx.commit().await.map_err(ApiError::internal)?;
    app.events.publish(Some(p.id), Some(&p.name), ev);
    Ok(AccessKeyCreated { key: k.view, secret_access_key: secret })
}

pub async fn delete(app: &App, ctx: &OpContext, project: Option<&str>, key: &str) -> ApiResult<()> {
    let mut tx = app.store.begin().await?;
    let p = super::project(&mut tx, ctx, project, Access::Read).await?;
    let sel = selector("access key", key)?;
    let k = kumo_store::access_keys::get(&mut tx, p.id, &sel)
        .await?
        .ok_or_else(|| ApiError::not_found("access key", key))?;
    // Your own key, or any key of a project you own.
    let own = ctx.actor.user.as_ref().is_some_and(|u| u.id == k.user_id);
    if !own {
        ctx.authorize_project(p.id, &p.name, Access::Manage).map_err(|_| {
            ApiError::new(
                ErrorCode::Forbidden,
                format!(
                    "access key '{key}' belongs to user '{}'; only they or an owner of the project may delete it",
                    k.view.user
                ),
            )
        })?;
    }
    kumo_store::access_keys::soft_delete(&mut tx, k.view.id).await?;
    let cause = ctx.cause("access_key_delete");
    let ev =
        kumo_store::events::record(&mut tx, &event(p.id, "access_key", k.view.id, &k.view.name, "deleted", &cause))
            .await?;
    tx.commit().await.map_err(ApiError::internal)?;
    app.events.publish(Some(p.id), Some(&p.name), ev);
    Ok(())
}

/// Who a request signed with an access key acts as (see [`resolve`]).
#[derive(Debug, Clone)]
pub struct S3Identity {
    pub access_key_id: String,
    /// The secret, in clear, to check the request's signature with.
    pub secret: String,
    /// The key's user with, as their only role, their current role in the key's project (none
    /// when they are no longer a member: every check then fails). Never an operator: a key is
    /// scoped to its project, and an operator's key acts as an owner of it.
    pub ctx: OpContext,
    pub project_id: ProjectId,
    pub project_name: String,
}

/// The identity of a live access key (None: no such key, or it was deleted, or its project or
/// user was). Every call reads the store: a deletion or a role change applies to the next request.
pub async fn resolve(app: &App, access_key_id: &str) -> ApiResult<Option<S3Identity>> {
    if access_key_id.len() != ACCESS_KEY_ID_LEN || !access_key_id.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Ok(None);
    }
    let mut conn = read(app).await?;
    let Some(k) = kumo_store::access_keys::identity(&mut conn, access_key_id).await? else {
        return Ok(None);
    };
    drop(conn);
    let sealed = hex::decode(&k.secret_sealed)
        .map_err(|e| ApiError::internal(format!("access key {access_key_id}: sealed secret is not hex: {e}")))?;
    let secret = app.config.master_key.open(access_key_id.as_bytes(), &sealed).map_err(|e| {
        ApiError::internal(format!(
            "access key {access_key_id}: {e} (is every controller given the same --master-key-file?)"
        ))
    })?;
    let secret = String::from_utf8(secret)
        .map_err(|_| ApiError::internal(format!("access key {access_key_id}: the secret is not text")))?;
    let role = if k.user_operator { Some("owner".to_string()) } else { k.role };
    let roles: BTreeMap<ProjectId, String> = role.into_iter().map(|r| (k.project_id, r)).collect();
    // Last use, at most once a minute per key (a write per request would cost more than the request).
    let stale = k.last_used.is_none_or(|t| chrono::Utc::now() - t > chrono::Duration::seconds(60));
    if stale {
        if let Ok(mut tx) = app.store.begin().await {
            if kumo_store::access_keys::touch(&mut tx, k.id).await.is_ok() {
                let _ = tx.commit().await;
            }
        }
    }
    let actor = Actor {
        // The key's own id stands for the token in messages and the audit log.
        token_id: TokenId::from(uuid::Uuid::from(k.id)),
        token_name: format!("access key {access_key_id}"),
        user: Some(UserRef { id: k.user_id, name: k.user_name }),
        operator: false,
        roles: Arc::new(roles),
    };
    Ok(Some(S3Identity {
        access_key_id: access_key_id.to_string(),
        secret,
        ctx: OpContext { actor, request_id: crate::error::current_request_id() },
        project_id: k.project_id,
        project_name: k.project_name,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn access_key_ids_look_like_aws_ones_and_do_not_repeat() {
        let ids: HashSet<String> = (0..1000).map(|_| new_access_key_id()).collect();
        assert_eq!(ids.len(), 1000);
        for id in &ids {
            assert_eq!(id.len(), ACCESS_KEY_ID_LEN, "{id}");
            assert!(id.starts_with("KUMO"), "{id}");
            assert!(id[4..].bytes().all(|b| b.is_ascii_uppercase() || (b'2'..=b'7').contains(&b)), "base32: {id}");
        }
    }

    #[test]
    fn secrets_are_long_plain_and_do_not_repeat() {
        let secrets: HashSet<String> = (0..1000).map(|_| new_secret()).collect();
        assert_eq!(secrets.len(), 1000);
        for s in &secrets {
            assert_eq!(s.len(), SECRET_ACCESS_KEY_LEN, "{s}");
            assert!(s.bytes().all(|b| b.is_ascii_alphanumeric()), "{s}");
        }
        // Every character of the alphabet turns up (a skewed generator would miss some).
        let seen: HashSet<u8> = secrets.iter().flat_map(|s| s.bytes()).collect();
        assert_eq!(seen.len(), 62);
    }
}
