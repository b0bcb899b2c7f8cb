//! Who is calling: authentication and the request context every operation receives.
//!
//! Every `/v1` call (but login and the OpenAPI document) carries `Authorization: Bearer <token>`:
//! the bootstrap operator token, a user's API token or a session token from `POST /v1/login`.
//! Tokens are stored hashed (SHA-256);
//! a short-lived in-memory cache keeps the lookup off the hot path. The resolved [`Actor`] lands in
//! the request's extensions and handlers take it as an [`OpContext`]. An actor is a cloud operator
//! (the bootstrap token, or a user flagged operator) or a tenant user whose rights come from their
//! role in each project; `OpContext::authorize` and `OpContext::authorize_project` are the one
//! authorisation check of every operation.

use crate::error::{current_request_id, ApiError};
use crate::App;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::Request;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use kumo_types::{ErrorCode, ProjectId, TokenId, UserId};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// An authenticated caller: the token used and, unless it is the bootstrap operator token, the
/// user it belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    pub token_id: TokenId,
    pub token_name: String,
    /// The user (None for the bootstrap operator token).
    pub user: Option<UserRef>,
    /// Cloud operator (global admin): may do everything, sees hosts and every project.
    pub operator: bool,
    /// The user's role in each project they are a member of, loaded with the token (and dropped
    /// from the cache when a membership changes), so a project-scoped check costs no query.
    pub roles: Arc<BTreeMap<ProjectId, String>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRef {
    pub id: UserId,
    pub name: String,
}

impl Actor {
    pub fn describe(&self) -> String {
        match &self.user {
            Some(u) if self.operator => format!("operator '{}' (token '{}')", u.name, self.token_name),
            Some(u) => format!("user '{}' (token '{}')", u.name, self.token_name),
            None => format!("operator token '{}'", self.token_name),
        }
    }
}

/// What an operation is about to do, for the authorisation check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Read something of a project, or a catalogue every user may read (instance types, public images).
    Read,
    /// Create, change or delete something of a project (collaborators and owners).
    Write,
    /// Manage a project itself, e.g. its members (owners).
    Manage,
    /// Operators only: hosts, projects, users, the catalogue, prices, quotas, public images.
    Operator,
}

/// Project roles, weakest first.
pub const ROLES: [&str; 3] = ["viewer", "collaborator", "owner"];

/// The context of one API operation.
#[derive(Debug, Clone)]
pub struct OpContext {
    pub actor: Actor,
    pub request_id: String,
}

impl OpContext {
    /// The authorisation check of an operation that is not about one project: operators may do
    /// everything; other users may only read catalogues.
    pub fn authorize(&self, access: Access) -> Result<(), ApiError> {
        if self.actor.operator || access == Access::Read {
            return Ok(());
        }
        Err(ApiError::new(ErrorCode::Forbidden, "only cloud operators may do this"))
    }

    /// The authorisation check of an operation on a project's resources. A user who is not a
    /// member gets 404 (they may not learn the project exists); a member whose role does not
    /// allow the access gets 403.
    pub fn authorize_project(&self, project_id: ProjectId, project_name: &str, access: Access) -> Result<(), ApiError> {
        if self.actor.operator {
            return Ok(());
        }
        let role =
            self.actor.roles.get(&project_id).ok_or_else(|| ApiError::not_found("project", project_name))?.as_str();
        let allowed = match access {
            Access::Read => true,
            Access::Write => role == "collaborator" || role == "owner",
            Access::Manage => role == "owner",
            Access::Operator => false,
        };
        if allowed {
            Ok(())
        } else {
            Err(ApiError::new(
                ErrorCode::Forbidden,
                format!("your role '{role}' in project '{project_name}' does not allow this"),
            ))
        }
    }

    /// The cause recorded on events: which operation, by whom.
    pub fn cause(&self, operation: &str) -> String {
        format!("api: {operation} by {} (request {})", self.actor.describe(), self.request_id)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for OpContext {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        let actor =
            parts.extensions.get::<Actor>().cloned().ok_or_else(|| ApiError::unauthenticated("missing credentials"))?;
        Ok(OpContext { actor, request_id: current_request_id() })
    }
}

pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// A fresh random token secret (256 bits).
pub fn new_token_secret() -> String {
    let bytes: [u8; 32] = rand::random();
    format!("kumo_{}", hex::encode(bytes))
}

const CACHE_TTL: Duration = Duration::from_secs(30);

/// Token hash → actor, for `CACHE_TTL`.
pub struct TokenCache {
    entries: Mutex<HashMap<String, (Actor, Instant)>>,
    /// Bumped whenever authority is withdrawn (a token revoked, a membership changed), so that
    /// long-lived requests holding an old authorisation (the live event streams) re-check at once.
    changed: tokio::sync::watch::Sender<u64>,
}

impl Default for TokenCache {
    fn default() -> TokenCache {
        TokenCache { entries: Mutex::default(), changed: tokio::sync::watch::Sender::new(0) }
    }
}

impl TokenCache {
    fn get(&self, hash: &str) -> Option<Actor> {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries.get(hash).filter(|(_, t)| t.elapsed() < CACHE_TTL).map(|(a, _)| a.clone())
    }

    /// Drops every cached token of a user (their roles changed).
    pub fn forget_user(&self, user_id: UserId) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries.retain(|_, (actor, _)| actor.user.as_ref().map(|u| u.id) != Some(user_id));
        drop(entries);
        self.changed.send_modify(|v| *v = v.wrapping_add(1));
    }

    /// Forgets tokens (by hash) at once, e.g. when they are revoked: a revoked token must not keep
    /// working from the cache until the TTL runs out.
    pub fn forget(&self, hashes: &[String]) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        for h in hashes {
            entries.remove(h);
        }
        drop(entries);
        self.changed.send_modify(|v| *v = v.wrapping_add(1));
    }

    /// Wakes when authority may have been withdrawn (see [`TokenCache::forget`]).
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changed.subscribe()
    }

    fn put(&self, hash: String, actor: Actor) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() > 10_000 {
            entries.clear();
        }
        entries.insert(hash, (actor, Instant::now()));
    }
}

/// Resolves a bearer token to its actor (through the cache). The API's middleware and the
/// dashboard's session cookie both authenticate through this one function.
pub async fn resolve(app: &App, token: &str) -> Result<Actor, ApiError> {
    resolve_hash(app, hash_token(token)).await
}

/// [`resolve`] by the token's hash (what long-lived requests keep to re-check their authority).
pub async fn resolve_hash(app: &App, hash: String) -> Result<Actor, ApiError> {
    if let Some(actor) = app.tokens.get(&hash) {
        return Ok(actor);
    }
    let mut conn = app.store.read().await?;
    let rec = kumo_store::tokens::lookup(&mut conn, &hash)
        .await?
        .ok_or_else(|| ApiError::unauthenticated("the bearer token is not valid (unknown, revoked or expired)"))?;
    let actor = Actor {
        token_id: rec.id,
        token_name: rec.name,
        user: match (rec.user_id, rec.user_name) {
            (Some(id), Some(name)) => Some(UserRef { id, name }),
            _ => None,
        },
        operator: rec.operator,
        roles: Arc::new(match (rec.user_id, rec.operator) {
            (Some(user_id), false) => kumo_store::members::roles_of(&mut conn, user_id).await?.into_iter().collect(),
            _ => BTreeMap::new(),
        }),
    };
    // One connection at a time: on PostgreSQL reads and writes share one pool, and a storm of
    // first requests each holding a read connection while waiting for a write one would empty it.
    drop(conn);
    // Recorded on cache refresh, so at most once per TTL per token.
    let mut wconn = app.store.begin().await?;
    kumo_store::tokens::touch(&mut wconn, actor.token_id).await?;
    wconn.commit().await.map_err(ApiError::internal)?;
    app.tokens.put(hash, actor.clone());
    Ok(actor)
}

/// The hash of the bearer token a request authenticated with (in the request's extensions), so a
/// long-lived request can re-check that its token still holds.
#[derive(Debug, Clone)]
pub struct TokenHash(pub String);

/// Middleware: every request under `/v1` (but the OpenAPI document) must carry a valid bearer token.
pub async fn authenticate(State(app): State<Arc<App>>, mut req: Request<axum::body::Body>, next: Next) -> Response {
    let header = req.headers().get(axum::http::header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    // The auth scheme is case-insensitive (RFC 7235).
    let bearer = header.and_then(|h| h.split_once(' ')).filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"));
    let token = match bearer.map(|(_, t)| t) {
        Some(t) if !t.trim().is_empty() => t.trim().to_string(),
        _ => {
            return ApiError::unauthenticated(
                "missing 'Authorization: Bearer <token>' header (the operator token is in DATA_DIR/admin-token)",
            )
            .into_response()
        }
    };
    let hash = hash_token(&token);
    match resolve_hash(&app, hash.clone()).await {
        Ok(actor) => {
            req.extensions_mut().insert(actor.clone());
            req.extensions_mut().insert(TokenHash(hash));
            let mut resp = next.run(req).await;
            // For the audit log, which wraps this layer.
            resp.extensions_mut().insert(actor);
            resp
        }
        Err(e) => e.into_response(),
    }
}
