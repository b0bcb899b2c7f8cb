//! Who signed a request: access keys of [`kumo_control::app::access_keys`].

use kumo_control::App;
use s3s::access::{S3Access, S3AccessContext};
use s3s::auth::{S3Auth, SecretKey};
use s3s::{s3_error, S3Result};
use std::sync::Arc;

/// Secrets for SigV4 checks: the live access keys (read on every request).
pub struct AccessKeys(pub Arc<App>);

#[async_trait::async_trait]
impl S3Auth for AccessKeys {
    async fn get_secret_key(&self, access_key: &str) -> S3Result<SecretKey> {
        match kumo_control::app::access_keys::resolve(&self.0, access_key).await {
            Ok(Some(id)) => Ok(SecretKey::from(id.secret)),
            Ok(None) => {
                Err(s3_error!(InvalidAccessKeyId, "The access key id you provided does not exist in our records."))
            }
            Err(e) => {
                tracing::error!(error = %e.internal.as_deref().unwrap_or(&e.message), "s3: resolving an access key");
                Err(s3_error!(InternalError))
            }
        }
    }
}

/// Lets anonymous requests through to the operations, which allow them only to read public-read
/// buckets (s3s's default check refuses every unsigned request).
pub struct AllowAnonymous;

#[async_trait::async_trait]
impl S3Access for AllowAnonymous {
    async fn check(&self, _cx: &mut S3AccessContext<'_>) -> S3Result<()> {
        Ok(())
    }
}
