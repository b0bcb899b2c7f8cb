//! Fault injection for crash tests: named points where a test can make kumod die as a `kill -9`
//! would, at exactly that step, instead of racing a kill against a sleep.
//!
//! `KUMOD_FAULT=<point>` in kumod's environment makes [`point`]`("<point>")` abort the process
//! (SIGABRT: no destructors, no flush, like a crash). Unset (production), a point costs one
//! relaxed load of a cached value. Always compiled in, so the tests in `crates/kumod/tests` drive
//! the real binary; only the environment enables it.
//!
//! Adding a point: call `kumo_agent::system::fault::point("area.step")` right after the step whose
//! interruption you want to test, list it below, and start kumod with `KUMOD_FAULT=area.step` in
//! a test (see `crates/kumod/tests/data_safety.rs`).
//!
//! Points:
//! - `image.delete.committed`: an image delete committed its soft delete but has not removed the
//!   image's directory (the orphan sweep quarantines it at the next start).
//! - `image.import.received`: an image upload is fully received into `images/<id>/upload`, no
//!   record yet (the sweep quarantines the half-finished upload at the next start).
//! - `backup.before-manifest`: a backup exported its volume and stored its chunks, no manifest yet
//!   (the backup sweep collects the chunks and the raw export at the next start).

use std::sync::OnceLock;

/// The environment variable naming the point to crash at.
pub const ENV: &str = "KUMOD_FAULT";

fn armed() -> Option<&'static str> {
    static POINT: OnceLock<Option<String>> = OnceLock::new();
    POINT.get_or_init(|| std::env::var(ENV).ok().filter(|s| !s.is_empty())).as_deref()
}

/// Aborts the process here if `KUMOD_FAULT` names this point.
pub fn point(name: &str) {
    if armed() == Some(name) {
        eprintln!("kumod: fault injection: aborting at '{name}' ({ENV})");
        std::process::abort();
    }
}
