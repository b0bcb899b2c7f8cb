//! The host agent's API over HTTPS: the serving side ([`server`]) a host runs for its agent, and
//! the client ([`client::RemoteAgent`]) a controller holds as the host's [`HostAgent`].
//!
//! ```text
//!   controller (kumo-control)                          host
//!     App.hosts: host id → RemoteAgent  ──HTTPS──▶  server::router → LocalAgent
//!        POST /agent/v1/call   {"call": "stop", "args": {…}}
//!        ◀── 200 {"ok": …} | {"err": {"kind": "not_found", "message": "…"}}
//! ```
//!
//! - **Push.** The controller calls the agent; the agent never calls back. Each call of the
//!   [`HostAgent`] trait is one request: the body a [`kumo_host_api::wire::Call`], the answer its
//!   [`kumo_host_api::wire::Reply`]. The message format is `kumo_host_api::wire`'s; this crate
//!   adds only HTTP, TLS and authentication. `GET /agent/v1/health` answers 200 when the agent
//!   serves and the secret is right.
//! - **Who is who.** The agent serves TLS with its own (typically self-signed) certificate; the
//!   controller pins that certificate by its SHA-256 fingerprint ([`tls::pinned_client_config`]):
//!   no CA, no name check, exactly that certificate. The controller proves itself with a bearer
//!   secret the agent compares in constant time. A missing or wrong secret is 401 and nothing is
//!   called; a body that is not a call (an unknown call from a newer controller, a bad argument)
//!   is 400 with serde's message, and nothing is called either.
//! - **Failures.** Anything of the transport (refused connection, timeout, a certificate that is
//!   not the pinned one, 401, 400, an unreadable answer) is [`HostError::Unreachable`] with what
//!   happened; the host's own errors come back with their kind.
//! - **Timeouts and cancellation.** Stop, detach and backups can take minutes: a call may run 10
//!   minutes ([`client::CALL_TIMEOUT`]); a connection must open within 3 s. The server runs every
//!   call to its end even when the caller goes away, and every call is idempotent, so a caller that
//!   timed out simply calls again.
//! - **Bulk data: one kind, beside the calls.** No JSON call carries a disk or an image as bytes:
//!   backups and image files are artifacts named by id (see `kumo_host_api::storage`), so a call's
//!   body stays small (at most [`server::MAX_CALL_BYTES`]). The one exception is a root disk moved
//!   to another host (cold migration): its staged export is read in chunks of at most 8 MiB with
//!   `GET /agent/v1/disks/{instance}/export?offset=N&max=M` (the answer: the bytes,
//!   `application/octet-stream`), and written to the target with `PUT
//!   /agent/v1/disks/{instance}/import?offset=N` (the body: the bytes). Same TLS, same bearer
//!   secret. A host's error comes back as 422 with the JSON of a `Reply` (`{"err": {…}}`), so it
//!   keeps its kind as in a call. The controller reads from one agent and writes to the other;
//!   agents never talk to each other (they have no credentials for one another).
//!
//! [`HostAgent`]: kumo_host_api::HostAgent
//! [`HostError::Unreachable`]: kumo_host_api::HostError::Unreachable

pub mod client;
pub mod server;
pub mod tls;

/// Where calls go.
pub const CALL_PATH: &str = "/agent/v1/call";
/// Where disk bytes of a move go: `{DISK_PATH}/{instance}/export` and `…/import`.
pub const DISK_PATH: &str = "/agent/v1/disks";

/// Where the agent says it serves.
pub const HEALTH_PATH: &str = "/agent/v1/health";
