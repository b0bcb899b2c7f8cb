//! Join tokens (operators only): one-time secrets a `kumod agent` joins the cluster with, as a
//! host of a zone. The token is returned once; only its SHA-256 hash is stored.

use crate::context::{hash_token, new_token_secret, Access, OpContext};
use crate::error::{ApiError, ApiResult};
use crate::App;
use kumo_types::{
    JoinTokenCreate, JoinTokenCreated, JOIN_TOKEN_DEFAULT_SECONDS, JOIN_TOKEN_MAX_SECONDS, JOIN_TOKEN_MIN_SECONDS,
};

/// What every join token starts with (so it is recognisable in a log or a paste).
pub const PREFIX: &str = "kumo_join_";

pub async fn create(app: &App, ctx: &OpContext, p: &JoinTokenCreate) -> ApiResult<JoinTokenCreated> {
    ctx.authorize(Access::Operator)?;
    let secs = p.expires_in_seconds.unwrap_or(JOIN_TOKEN_DEFAULT_SECONDS);
    if !(JOIN_TOKEN_MIN_SECONDS..=JOIN_TOKEN_MAX_SECONDS).contains(&secs) {
        return Err(ApiError::invalid(format!(
            "expires_in_seconds must be between {JOIN_TOKEN_MIN_SECONDS} and {JOIN_TOKEN_MAX_SECONDS} (7 days) (got {secs})"
        )));
    }
    let mut tx = app.store.begin().await?;
    let (zone_id, zone) = super::zones::referenced(&mut tx, "zone", &p.zone).await?;
    // new_token_secret is `kumo_<64 hex>`: the join prefix replaces `kumo_`.
    let secret = new_token_secret();
    let token = format!("{PREFIX}{}", secret.trim_start_matches("kumo_"));
    let time_expires = kumo_store::now() + chrono::TimeDelta::seconds(secs as i64);
    let id = kumo_store::join_tokens::create(&mut tx, zone_id, &hash_token(&token), time_expires).await?;
    tx.commit().await.map_err(ApiError::internal)?;
    tracing::info!(%id, %zone, %time_expires, "join token created");
    Ok(JoinTokenCreated { id, token, zone, time_expires })
}
