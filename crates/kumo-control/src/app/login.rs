//! Login: a user name and password for a session token, with brute-force protection.
//!
//! The limiter counts failed attempts in memory, in three ways (the design of "smart lockout"
//! services: refuse the guesser, not the account's owner):
//! - per (user name, source): [`MAX_FAILURES`] failures within [`WINDOW`] refuse that source for
//!   that name. Someone hammering a name from their address blocks only themselves.
//! - per source: [`SOURCE_MAX_FAILURES`] failures for any names refuse the source (password
//!   spraying across many names).
//! - per user name: [`NAME_MAX_FAILURES`] failures from all sources together (a guess spread over
//!   many addresses) refuse that name from *unfamiliar* sources only; a source the user logged in
//!   from within [`FAMILIAR_FOR`] keeps working, so nobody can lock a user out by name alone.
//!
//! A refused attempt gets 429 `TooManyRequests` (and a `Retry-After`) without checking the
//! password. The source is the client's address as [`crate::http::forwarded`] resolves it
//! (behind a trusted proxy, the forwarded client), an IPv6 address counted by its /64 (one
//! machine usually owns a whole /64). The answer to bad credentials is the same whether the user
//! exists or not, and takes as long (a dummy hash is verified for unknown users).

use crate::context::{hash_token, new_token_secret};
use crate::error::{ApiError, ApiResult};
use crate::App;
use kumo_types::{ErrorCode, LoginRequest, LoginResponse, UserId};
use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Failed attempts allowed per (user name, source) within [`WINDOW`].
pub const MAX_FAILURES: usize = 5;
/// Failed attempts allowed per source (any user names) within [`WINDOW`].
pub const SOURCE_MAX_FAILURES: usize = 20;
/// Failed attempts allowed per user name from all sources within [`WINDOW`], after which only
/// familiar sources may try that name.
pub const NAME_MAX_FAILURES: usize = 50;
pub const WINDOW: Duration = Duration::from_secs(300);
/// How long a source stays familiar for a user after a successful login from it.
pub const FAMILIAR_FOR: Duration = Duration::from_secs(30 * 86_400);
/// Lifetime of a session token.
pub const SESSION_TTL: chrono::TimeDelta = chrono::TimeDelta::hours(12);
/// Bound on the limiter's memory: past this many keys, expired ones are dropped (and, if that is
/// not enough, all of them: forgetting failures is safer than running out of memory).
const MAX_KEYS: usize = 100_000;

/// The source of an attempt as the limiter counts it: an IPv4 address, or an IPv6 /64.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Source(Option<IpAddr>);

impl Source {
    pub fn of(ip: Option<IpAddr>) -> Source {
        Source(ip.map(|ip| match ip {
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !((1u128 << 64) - 1))),
            },
            v4 => v4,
        }))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Pair(String, Source),
    Source(Source),
    Name(String),
}

impl Key {
    fn limit(&self) -> usize {
        match self {
            Key::Pair(..) => MAX_FAILURES,
            Key::Source(_) => SOURCE_MAX_FAILURES,
            Key::Name(_) => NAME_MAX_FAILURES,
        }
    }
}

#[derive(Default)]
struct State {
    /// Times of recent failures per key (at most the key's limit).
    failures: HashMap<Key, VecDeque<Instant>>,
    /// (user name, source) → last successful login from there.
    familiar: HashMap<(String, Source), Instant>,
}

/// Recent failed logins and familiar sources; see the module documentation.
#[derive(Default)]
pub struct LoginLimiter {
    state: Mutex<State>,
}

impl LoginLimiter {
    fn keys(name: &str, source: Source) -> [Key; 3] {
        [Key::Pair(name.to_string(), source), Key::Source(source), Key::Name(name.to_string())]
    }

    /// Seconds to wait when this attempt must be refused, else None.
    pub fn blocked(&self, name: &str, source: Source, now: Instant) -> Option<u64> {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let familiar = st
            .familiar
            .get(&(name.to_string(), source))
            .is_some_and(|t| now.saturating_duration_since(*t) < FAMILIAR_FOR);
        let mut wait: Option<u64> = None;
        for k in Self::keys(name, source) {
            if familiar && matches!(k, Key::Name(_)) {
                continue;
            }
            let limit = k.limit();
            if let Some(q) = st.failures.get_mut(&k) {
                while q.front().is_some_and(|t| now.saturating_duration_since(*t) >= WINDOW) {
                    q.pop_front();
                }
                if q.len() >= limit {
                    let oldest = q.front().copied().unwrap_or(now);
                    let secs = WINDOW.saturating_sub(now.saturating_duration_since(oldest)).as_secs().max(1);
                    wait = Some(wait.map_or(secs, |w| w.max(secs)));
                }
            }
        }
        wait
    }

    /// Records a failed attempt (wrong password or unknown user).
    pub fn fail(&self, name: &str, source: Source, now: Instant) {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if st.failures.len() > MAX_KEYS {
            st.failures.retain(|_, q| q.back().is_some_and(|t| now.saturating_duration_since(*t) < WINDOW));
            if st.failures.len() > MAX_KEYS {
                st.failures.clear();
            }
        }
        for k in Self::keys(name, source) {
            let limit = k.limit();
            let q = st.failures.entry(k).or_default();
            q.push_back(now);
            while q.len() > limit {
                q.pop_front();
            }
        }
    }

    /// A successful login clears the (name, source) pair's failures and makes the source familiar
    /// for the name. The source's and the name's failures stay: they may be someone else's.
    pub fn succeed(&self, name: &str, source: Source, now: Instant) {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        st.failures.remove(&Key::Pair(name.to_string(), source));
        if st.familiar.len() > MAX_KEYS {
            st.familiar.retain(|_, t| now.saturating_duration_since(*t) < FAMILIAR_FOR);
            if st.familiar.len() > MAX_KEYS {
                st.familiar.clear();
            }
        }
        st.familiar.insert((name.to_string(), source), now);
    }
}

/// The outcome of a login, for the handler (the token) and the audit log (who tried).
pub enum LoginOutcome {
    Ok(LoginResponse, UserId),
    Err(ApiError, Option<u64>),
}

fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| super::users::hash_password("not a real password").unwrap_or_default())
}

const BAD_CREDENTIALS: &str = "wrong user name or password";

pub async fn login(app: &App, req: &LoginRequest, source: Option<IpAddr>) -> LoginOutcome {
    let source = Source::of(source);
    if let Some(secs) = app.logins.blocked(&req.username, source, Instant::now()) {
        let e =
            ApiError::new(ErrorCode::TooManyRequests, format!("too many failed logins; try again in {secs} seconds"));
        return LoginOutcome::Err(e, Some(secs));
    }
    match check(app, req).await {
        Ok(Some(user_id)) => match issue_session(app, user_id).await {
            Ok(resp) => {
                app.logins.succeed(&req.username, source, Instant::now());
                LoginOutcome::Ok(resp, user_id)
            }
            Err(e) => LoginOutcome::Err(e, None),
        },
        Ok(None) => {
            app.logins.fail(&req.username, source, Instant::now());
            LoginOutcome::Err(ApiError::unauthenticated(BAD_CREDENTIALS), None)
        }
        Err(e) => LoginOutcome::Err(e, None),
    }
}

/// The user id when the credentials are right.
async fn check(app: &App, req: &LoginRequest) -> ApiResult<Option<UserId>> {
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

async fn issue_session(app: &App, user_id: UserId) -> ApiResult<LoginResponse> {
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

    fn src(s: &str) -> Source {
        Source::of(Some(s.parse().expect("ip")))
    }

    #[test]
    fn five_failures_block_the_pair_for_the_rest_of_the_window() {
        let l = LoginLimiter::default();
        let a = src("192.0.2.1");
        let t0 = Instant::now();
        for i in 0..MAX_FAILURES {
            assert_eq!(l.blocked("alice", a, t0), None, "blocked after {i} failures");
            l.fail("alice", a, t0);
        }
        assert_eq!(l.blocked("alice", a, t0 + Duration::from_secs(60)), Some(240));
        // The same name from elsewhere, and another name from the same source, still work.
        assert_eq!(l.blocked("alice", src("192.0.2.2"), t0), None);
        assert_eq!(l.blocked("bob", a, t0), None);
        assert_eq!(l.blocked("alice", a, t0 + WINDOW), None, "failures expire");
    }

    #[test]
    fn a_source_spraying_many_names_is_blocked() {
        let l = LoginLimiter::default();
        let a = src("192.0.2.1");
        let t0 = Instant::now();
        for i in 0..SOURCE_MAX_FAILURES {
            l.fail(&format!("user{i}"), a, t0);
        }
        assert!(l.blocked("someone-else", a, t0).is_some());
        assert_eq!(l.blocked("someone-else", src("192.0.2.2"), t0), None);
    }

    #[test]
    fn a_name_guessed_from_many_sources_stays_open_to_familiar_ones() {
        let l = LoginLimiter::default();
        let t0 = Instant::now();
        let home = src("198.51.100.7");
        l.succeed("root", home, t0);
        for i in 0..NAME_MAX_FAILURES {
            l.fail("root", src(&format!("10.0.{}.{}", i / 200, i % 200)), t0);
        }
        assert!(l.blocked("root", src("203.0.113.9"), t0).is_some(), "an unfamiliar source is refused");
        assert_eq!(l.blocked("root", home, t0), None, "the user's own address still works");
        assert_eq!(l.blocked("root", home, t0 + FAMILIAR_FOR + WINDOW), None, "failures expired too");
    }

    #[test]
    fn success_clears_the_pair_but_not_the_source() {
        let l = LoginLimiter::default();
        let a = src("192.0.2.1");
        let t0 = Instant::now();
        for i in 0..SOURCE_MAX_FAILURES {
            l.fail(&format!("user{}", i % 4), a, t0);
        }
        l.fail("alice", a, t0);
        l.succeed("alice", a, t0);
        assert!(l.blocked("alice", a, t0).is_some(), "the source is still over its limit");
        assert_eq!(l.blocked("alice", src("192.0.2.2"), t0), None);
    }

    #[test]
    fn ipv6_sources_count_by_their_64() {
        assert_eq!(src("2001:db8:1:2::1"), src("2001:db8:1:2:ffff::9"));
        assert_ne!(src("2001:db8:1:2::1"), src("2001:db8:1:3::1"));
        assert_eq!(src("::ffff:192.0.2.1"), src("192.0.2.1"));
    }
}
