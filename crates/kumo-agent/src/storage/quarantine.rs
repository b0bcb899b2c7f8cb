//! Quarantine: where kumod moves what it would otherwise delete on its own judgement (leaked
//! instance run directories and volumes, orphaned files), so one wrong judgement — a wrong
//! database, a bug — can never wipe a host. Deletions the user asked for do not come here.
//!
//! Layout: `DATA_DIR/quarantine/<kind>/<name>-<unix seconds>/<original file or directory>`.
//! Entries are deleted once older than the grace period (`kumod --quarantine-days`, default 7),
//! by [`Quarantine::purge`]. To recover something, stop kumod and move it back to where the log
//! line that quarantined it says it was.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The quarantine of one data directory, with counters for metrics.
pub struct Quarantine {
    dir: PathBuf,
    /// Entries moved in since kumod started, per kind.
    moved: Mutex<std::collections::BTreeMap<String, u64>>,
    purged: AtomicU64,
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

impl Quarantine {
    /// `dir` is `DATA_DIR/quarantine`.
    pub fn new(dir: PathBuf) -> Quarantine {
        Quarantine { dir, moved: Mutex::new(Default::default()), purged: AtomicU64::new(0) }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Moves `paths` (files or directories; the missing ones are skipped) together into one
    /// entry `quarantine/<kind>/<name>-<time>/`. A rename: they must be on the data directory's
    /// filesystem. Returns the entry, or None when none of them existed.
    pub fn put(&self, kind: &str, name: &str, paths: &[&Path]) -> std::io::Result<Option<PathBuf>> {
        let present: Vec<&Path> = paths.iter().copied().filter(|p| std::fs::symlink_metadata(p).is_ok()).collect();
        if present.is_empty() {
            return Ok(None);
        }
        let base = self.dir.join(kind);
        let mut entry = base.join(format!("{name}-{}", now_secs()));
        let mut n = 1;
        while entry.exists() {
            entry = base.join(format!("{name}-{}.{n}", now_secs()));
            n += 1;
        }
        std::fs::create_dir_all(&entry)?;
        for path in present {
            let file_name = path.file_name().map(|f| f.to_os_string()).unwrap_or_else(|| "data".into());
            let dst = entry.join(file_name);
            std::fs::rename(path, &dst)?;
            tracing::warn!(kind, from = %path.display(), to = %dst.display(), "quarantined (deleted after the grace period)");
        }
        *self.moved.lock().unwrap_or_else(|p| p.into_inner()).entry(kind.to_string()).or_default() += 1;
        Ok(Some(entry))
    }

    /// Entries moved in since kumod started, per kind.
    pub fn moved(&self) -> Vec<(String, u64)> {
        self.moved.lock().unwrap_or_else(|p| p.into_inner()).iter().map(|(k, v)| (k.clone(), *v)).collect()
    }

    /// Entries deleted after their grace period since kumod started.
    pub fn purged(&self) -> u64 {
        self.purged.load(Ordering::Relaxed)
    }

    /// Deletes entries quarantined more than `grace` ago (by the time in their name). Returns
    /// how many went.
    pub fn purge(&self, grace: Duration) -> usize {
        let cutoff = now_secs().saturating_sub(grace.as_secs());
        let mut removed = 0;
        let Ok(kinds) = std::fs::read_dir(&self.dir) else { return 0 };
        for kind in kinds.flatten() {
            let Ok(entries) = std::fs::read_dir(kind.path()) else { continue };
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                // `<name>-<secs>` or `<name>-<secs>.<n>`.
                let stamp: Option<u64> =
                    name.rsplit('-').next().and_then(|t| t.split('.').next()).and_then(|t| t.parse().ok());
                let Some(stamp) = stamp else { continue };
                if stamp > cutoff {
                    continue;
                }
                let path = e.path();
                let res = if path.is_dir() { std::fs::remove_dir_all(&path) } else { std::fs::remove_file(&path) };
                match res {
                    Ok(()) => {
                        tracing::info!(entry = %path.display(), "quarantine entry past its grace period deleted");
                        removed += 1;
                    }
                    Err(e) => tracing::warn!(entry = %path.display(), "could not delete quarantine entry: {e}"),
                }
            }
        }
        self.purged.fetch_add(removed as u64, Ordering::Relaxed);
        removed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_moves_aside_and_purge_respects_the_grace_period() {
        let dir = tempfile::tempdir().unwrap();
        let q = Quarantine::new(dir.path().join("quarantine"));
        let f = dir.path().join("x.qcow2");
        std::fs::write(&f, b"data").unwrap();
        let dst = q.put("volumes", "x", &[&f]).unwrap().unwrap();
        assert!(!f.exists());
        assert_eq!(std::fs::read(dst.join("x.qcow2")).unwrap(), b"data");
        assert_eq!(q.moved(), vec![("volumes".to_string(), 1)]);
        assert_eq!(q.put("volumes", "gone", &[&dir.path().join("nothing")]).unwrap(), None);
        assert_eq!(q.purge(Duration::from_secs(3600)), 0);
        assert!(dst.exists());
        assert_eq!(q.purge(Duration::ZERO), 1);
        assert!(!dst.exists());
        assert_eq!(q.purged(), 1);
    }
}
