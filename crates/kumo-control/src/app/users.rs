//! Users (operators only): create with an argon2id password hash, list, view, delete (which
//! revokes every token of the user at once).

use super::{read, selector};
use crate::context::{Access, OpContext};
use crate::error::{already_exists, ApiError, ApiResult};
use crate::App;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use kumo_types::identity::PASSWORD_MIN_CHARS;
use kumo_types::page::PageRequest;
use kumo_types::{ResultsPage, UserCreate, UserView};

/// Hashes a password with argon2id (default parameters) and a random salt, in PHC string form.
pub fn hash_password(password: &str) -> ApiResult<String> {
    let salt_bytes: [u8; 16] = rand::random();
    let salt = SaltString::encode_b64(&salt_bytes).map_err(ApiError::internal)?;
    Ok(Argon2::default().hash_password(password.as_bytes(), &salt).map_err(ApiError::internal)?.to_string())
}

/// Whether `password` matches a PHC hash made by [`hash_password`].
pub fn verify_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|h| Argon2::default().verify_password(password.as_bytes(), &h).is_ok())
}

/// Runs the CPU-heavy hashing off the async workers.
pub async fn hash_password_blocking(password: String) -> ApiResult<String> {
    tokio::task::spawn_blocking(move || hash_password(&password)).await.map_err(ApiError::internal)?
}

pub fn check_password(password: &str) -> ApiResult<()> {
    let n = password.chars().count();
    if n < PASSWORD_MIN_CHARS {
        return Err(ApiError::invalid(format!(
            "the password has {n} characters; it needs at least {PASSWORD_MIN_CHARS}"
        )));
    }
    Ok(())
}

pub async fn create(app: &App, ctx: &OpContext, p: &UserCreate) -> ApiResult<UserView> {
    ctx.authorize(Access::Operator)?;
    super::check_description(&p.description)?;
    check_password(&p.password)?;
    let hash = hash_password_blocking(p.password.clone()).await?;
    let mut tx = app.store.begin().await?;
    let view = kumo_store::users::create(&mut tx, p.name.as_str(), &p.description, &hash, p.operator)
        .await
        .map_err(already_exists("user", p.name.as_str()))?;
    tx.commit().await.map_err(ApiError::internal)?;
    tracing::info!(user = %view.name, operator = view.operator, by = %ctx.actor.describe(), "user created");
    Ok(view)
}

pub async fn list(app: &App, ctx: &OpContext, page: &PageRequest) -> ApiResult<ResultsPage<UserView>> {
    ctx.authorize(Access::Operator)?;
    Ok(kumo_store::users::list(&mut *read(app).await?, page).await?)
}

pub async fn view(app: &App, ctx: &OpContext, user: &str) -> ApiResult<UserView> {
    ctx.authorize(Access::Operator)?;
    let sel = selector("user", user)?;
    kumo_store::users::get(&mut *read(app).await?, &sel).await?.ok_or_else(|| ApiError::not_found("user", user))
}

pub async fn delete(app: &App, ctx: &OpContext, user: &str) -> ApiResult<()> {
    ctx.authorize(Access::Operator)?;
    let sel = selector("user", user)?;
    let mut tx = app.store.begin().await?;
    let u = kumo_store::users::get(&mut tx, &sel).await?.ok_or_else(|| ApiError::not_found("user", user))?;
    if ctx.actor.user.as_ref().is_some_and(|me| me.id == u.id) {
        return Err(ApiError::conflict("you cannot delete your own user; ask another operator"));
    }
    let hashes = kumo_store::tokens::revoke_all_for_user(&mut tx, u.id).await?;
    kumo_store::users::soft_delete(&mut tx, u.id).await?;
    tx.commit().await.map_err(ApiError::internal)?;
    app.tokens.forget(&hashes);
    tracing::info!(user = %u.name, tokens_revoked = hashes.len(), by = %ctx.actor.describe(), "user deleted");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_hash_with_argon2id_and_verify() {
        let h = hash_password("correct horse").expect("hash");
        assert!(h.starts_with("$argon2id$"), "{h}");
        assert!(verify_password("correct horse", &h));
        assert!(!verify_password("wrong horse", &h));
        assert!(!verify_password("correct horse", "not a hash"));
        assert_ne!(h, hash_password("correct horse").expect("hash"), "salts must differ");
    }

    #[test]
    fn short_passwords_are_refused() {
        assert!(check_password("1234567").is_err());
        assert!(check_password("12345678").is_ok());
        assert!(check_password("ééééééé").is_err(), "counted in characters, not bytes");
    }
}
