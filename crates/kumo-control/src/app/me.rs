//! The caller's own account: who am I, and my API tokens (create, list, revoke).

use crate::context::{hash_token, new_token_secret, Access, OpContext, UserRef};
use crate::error::{ApiError, ApiResult};
use crate::App;
use kumo_types::{ErrorCode, MeView, TokenCreate, TokenCreated, TokenView};

/// Longest token lifetime accepted, days.
pub const TOKEN_MAX_DAYS: u32 = 3650;

pub async fn view(app: &App, ctx: &OpContext) -> ApiResult<MeView> {
    ctx.authorize(Access::Read)?;
    let a = &ctx.actor;
    let projects = match (&a.user, a.operator) {
        (Some(u), false) => kumo_store::users::memberships(&mut *super::read(app).await?, u.id).await?,
        _ => Vec::new(),
    };
    Ok(MeView {
        kind: if a.operator { "operator" } else { "user" }.into(),
        token_name: a.token_name.clone(),
        user: a.user.as_ref().map(|u| u.name.clone()),
        user_id: a.user.as_ref().map(|u| u.id),
        operator: a.operator,
        projects,
    })
}

/// Tokens belong to users; the bootstrap operator token has none.
fn me(ctx: &OpContext) -> ApiResult<&UserRef> {
    ctx.actor.user.as_ref().ok_or_else(|| {
        ApiError::new(
            ErrorCode::Forbidden,
            "the bootstrap operator token belongs to no user; create a user and log in as it to manage tokens",
        )
    })
}

pub async fn token_create(app: &App, ctx: &OpContext, p: &TokenCreate) -> ApiResult<TokenCreated> {
    ctx.authorize(Access::Read)?;
    let user = me(ctx)?;
    let expires_at = match p.expires_in_days {
        Some(0) => return Err(ApiError::invalid("expires_in_days must be at least 1 (omit it for no expiry)")),
        Some(d) if d > TOKEN_MAX_DAYS => {
            return Err(ApiError::invalid(format!("expires_in_days is {d}; at most {TOKEN_MAX_DAYS}")))
        }
        Some(d) => Some(kumo_store::now() + chrono::TimeDelta::days(i64::from(d))),
        None => None,
    };
    let secret = new_token_secret();
    let mut tx = app.store.begin().await?;
    kumo_store::tokens::retire_expired(&mut tx, user.id, p.name.as_str()).await?;
    kumo_store::tokens::insert_for_user(&mut tx, user.id, p.name.as_str(), &hash_token(&secret), "user", expires_at)
        .await
        .map_err(|e| match e {
            kumo_store::StoreError::Conflict(_) => ApiError::new(
                ErrorCode::ObjectAlreadyExists,
                format!("you already have a token named '{}'; delete it or choose another name", p.name),
            ),
            other => ApiError::internal(other),
        })?;
    tx.commit().await.map_err(ApiError::internal)?;
    Ok(TokenCreated { name: p.name.to_string(), token: secret, expires_at })
}

pub async fn token_list(app: &App, ctx: &OpContext) -> ApiResult<Vec<TokenView>> {
    ctx.authorize(Access::Read)?;
    let user = me(ctx)?;
    Ok(kumo_store::tokens::list_for_user(&mut *super::read(app).await?, user.id).await?)
}

/// Revokes a token: it stops working at once (it is dropped from the auth cache too).
pub async fn token_delete(app: &App, ctx: &OpContext, name: &str) -> ApiResult<()> {
    ctx.authorize(Access::Read)?;
    let user = me(ctx)?;
    let mut tx = app.store.begin().await?;
    let hashes = kumo_store::tokens::revoke_by_name(&mut tx, user.id, name).await?;
    if hashes.is_empty() {
        return Err(ApiError::not_found("token", name));
    }
    tx.commit().await.map_err(ApiError::internal)?;
    app.tokens.forget(&hashes);
    Ok(())
}
