//! Login: a user name and password for a session token, with brute-force protection.
//!
//! Failed attempts are counted in memory per user name and per source address: after
//! `MAX_FAILURES` failures within `WINDOW`, further attempts from that address or for that user
//! are refused with 429 `TooManyRequests` (and a `Retry-After`) without checking the password.
//! The answer to bad credentials is the same whether the user exists or not, and takes as long
//! (a dummy hash is verified for unknown users).

use crate::context::{hash_token, new_token_secret};
use crate::error::{ApiError, ApiResult};
use crate::App;
use kumo_types::{ErrorCode, LoginRequest, LoginResponse};
use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Failed attempts allowed per user name or source address within [`WINDOW`].
pub const MAX_FAILURES: usize = 5;
pub const WINDOW: Duration = Duration::from_secs(300);
/// Lifetime of a session token.
pub const SESSION_TTL: chrono::TimeDelta = chrono::TimeDelta::hours(12);

/// Recent failed logins per key (`user:<name>`, `addr:<ip>`).
#[derive(Default)]
pub struct LoginLimiter {
    failures: Mutex<HashMap<String, VecDeque<Instant>>>,
}

impl LoginLimiter {
    /// Seconds to wait when any key has used up its failures, else None.
    pub fn blocked(&self, keys: &[String], now: Instant) -> Option<u64> {
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let mut wait = None;
        for k in keys {
            if let Some(q) = map.get_mut(k) {
                while q.front().is_some_and(|t| now.duration_since(*t) >= WINDOW) {
                    q.pop_front();
                }
                if q.len() >= MAX_FAILURES {
                    let oldest = q.front().copied().unwrap_or(now);
                    let secs = WINDOW.saturating_sub(now.duration_since(oldest)).as_secs().max(1);
                    wait = Some(wait.map_or(secs, |w: u64| w.max(secs)));
                }
            }
        }
        wait
    }

    pub fn fail(&self, keys: &[String], now: Instant) {
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() > 100_000 {
            map.retain(|_, q| q.back().is_some_and(|t| now.duration_since(*t) < WINDOW));
        }
        for k in keys {
            let q = map.entry(k.clone()).or_default();
            q.push_back(now);
            if q.len() > MAX_FAILURES {
                q.pop_front();
            }
        }
    }

    /// A successful login clears the user name's failures (not the address's).
    pub fn succeed(&self, user_key: &str) {
        self.failures.lock().unwrap_or_else(|p| p.into_inner()).remove(user_key);
    }
}

/// The outcome of a login, for the handler (the token) and the audit log (who tried).
pub enum LoginOutcome {
    Ok(LoginResponse, uuid::Uuid),
    Err(ApiError, Option<u64>),
}

fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| super::users::hash_password("not a real password").unwrap_or_default())
}

const BAD_CREDENTIALS: &str = "wrong user name or password";

pub async fn login(app: &App, req: &LoginRequest, source: Option<IpAddr>) -> LoginOutcome {
    let user_key = format!("user:{}", req.username);
    let mut keys = vec![user_key.clone()];
    if let Some(ip) = source {
        keys.push(format!("addr:{ip}"));
    }
    if let Some(secs) = app.logins.blocked(&keys, Instant::now()) {
        let e =
            ApiError::new(ErrorCode::TooManyRequests, format!("too many failed logins; try again in {secs} seconds"));
        return LoginOutcome::Err(e, Some(secs));
    }
    match check(app, req).await {
        Ok(Some(user_id)) => match issue_session(app, user_id).await {
            Ok(resp) => {
                app.logins.succeed(&user_key);
                LoginOutcome::Ok(resp, user_id)
            }
            Err(e) => LoginOutcome::Err(e, None),
        },
        Ok(None) => {
            app.logins.fail(&keys, Instant::now());
            LoginOutcome::Err(ApiError::unauthenticated(BAD_CREDENTIALS), None)
        }
        Err(e) => LoginOutcome::Err(e, None),
    }
}

/// The user id when the credentials are right.
async fn check(app: &App, req: &LoginRequest) -> ApiResult<Option<uuid::Uuid>> {
    let creds = kumo_store::users::credentials(&mut *super::read(app).await?, &req.username).await?;
    let password = req.password.clone();
    let (user_id, hash) = match creds {
        Some((id, h)) => (Some(id), h),
        None => (None, dummy_hash().to_string()),
    };
    let ok = tokio::task::spawn_blocking(move || super::users::verify_password(&password, &hash))
        .await
        .map_err(ApiError::internal)?;
    Ok(user_id.filter(|_| ok))
}

async fn issue_session(app: &App, user_id: uuid::Uuid) -> ApiResult<LoginResponse> {
    let secret = new_token_secret();
    let expires_at = kumo_store::now() + SESSION_TTL;
    let mut tx = app.store.begin().await?;
    kumo_store::tokens::insert_for_user(&mut tx, user_id, "session", &hash_token(&secret), "session", Some(expires_at))
        .await?;
    tx.commit().await.map_err(ApiError::internal)?;
    Ok(LoginResponse { token: secret, expires_at })
}

/// Ends a session (logout): the session token stops working at once. Only tokens issued by login
/// are revoked; an API token someone logged in with stays valid.
pub async fn logout(app: &App, token: &str) -> ApiResult<bool> {
    let hash = hash_token(token);
    let mut tx = app.store.begin().await?;
    let revoked = kumo_store::tokens::revoke_session(&mut tx, &hash).await?;
    tx.commit().await.map_err(ApiError::internal)?;
    app.tokens.forget(&[hash]);
    Ok(revoked)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn five_failures_block_for_the_rest_of_the_window() {
        let l = LoginLimiter::default();
        let keys = vec!["user:alice".to_string(), "addr:127.0.0.1".to_string()];
        let t0 = Instant::now();
        for i in 0..MAX_FAILURES {
            assert_eq!(l.blocked(&keys, t0), None, "blocked after {i} failures");
            l.fail(&keys, t0);
        }
        let wait = l.blocked(&keys, t0 + Duration::from_secs(60)).expect("blocked");
        assert_eq!(wait, 240);
        // Another user from the same address is blocked too; the same user from elsewhere also.
        assert!(l.blocked(&["user:bob".into(), "addr:127.0.0.1".into()], t0).is_some());
        assert!(l.blocked(&["user:alice".into(), "addr:10.0.0.1".into()], t0).is_some());
        assert!(l.blocked(&["user:bob".into(), "addr:10.0.0.1".into()], t0).is_none());
        assert_eq!(l.blocked(&keys, t0 + WINDOW), None, "failures expire");
    }

    #[test]
    fn success_clears_the_user_but_not_the_address() {
        let l = LoginLimiter::default();
        let keys = vec!["user:alice".to_string(), "addr:127.0.0.1".to_string()];
        let t0 = Instant::now();
        for _ in 0..MAX_FAILURES {
            l.fail(&keys, t0);
        }
        l.succeed("user:alice");
        assert!(l.blocked(&["user:alice".into()], t0).is_none());
        assert!(l.blocked(&["addr:127.0.0.1".into()], t0).is_some());
    }
}
