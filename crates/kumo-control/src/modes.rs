//! Owner-only file modes in the data directory.
//!
//! The data directory holds user-data and password hashes (`kumo.db`), guests' disks, config
//! drives and serial logs, and keys: nothing in it is for other local users. kumod sets its umask
//! to 077 at start (`kumod` main) (so everything it, QEMU and qemu-img create is owner-only: they all run as the
//! same user), and [`secure`] checks what already exists — left by an older kumod, or restored
//! from a backup with other modes — and removes group and other permissions, with a warning per
//! path fixed.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// How many paths a start-up names in the log before summing up.
const NAMED: usize = 20;

/// Makes the data directory and everything under it owner-only (directories 0700 at most, files
/// 0600 at most: group and other bits removed, owner bits kept). Symlinks are not followed.
/// Returns how many paths were fixed.
pub fn secure(data_dir: &Path) -> usize {
    let mut fixed = 0;
    let mut stack = vec![data_dir.to_path_buf()];
    while let Some(path) = stack.pop() {
        let Ok(meta) = std::fs::symlink_metadata(&path) else { continue };
        if meta.file_type().is_symlink() {
            continue;
        }
        let mode = meta.permissions().mode() & 0o7777;
        if mode & 0o077 != 0 {
            let new = mode & !0o077;
            match std::fs::set_permissions(&path, std::fs::Permissions::from_mode(new)) {
                Ok(()) => {
                    fixed += 1;
                    if fixed <= NAMED {
                        tracing::warn!(path = %path.display(), "was readable by other local users ({mode:o}); now {new:o}");
                    }
                }
                Err(e) => tracing::warn!(path = %path.display(), "could not make owner-only: {e}"),
            }
        }
        if meta.is_dir() {
            if let Ok(rd) = std::fs::read_dir(&path) {
                stack.extend(rd.flatten().map(|e| e.path()));
            }
        }
    }
    if fixed > NAMED {
        tracing::warn!(
            "{fixed} paths in {} were readable by other local users; all made owner-only",
            data_dir.display()
        );
    }
    fixed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_and_other_bits_go_owner_bits_stay() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("data");
        std::fs::create_dir_all(d.join("instances/x")).unwrap();
        std::fs::write(d.join("instances/x/serial.log"), b"x").unwrap();
        std::fs::write(d.join("kumo.db"), b"x").unwrap();
        for (p, m) in [("", 0o755), ("instances", 0o755), ("instances/x", 0o750), ("kumo.db", 0o644)] {
            std::fs::set_permissions(d.join(p), std::fs::Permissions::from_mode(m)).unwrap();
        }
        std::fs::set_permissions(d.join("instances/x/serial.log"), std::fs::Permissions::from_mode(0o640)).unwrap();
        assert_eq!(secure(&d), 5);
        let mode = |p: &str| std::fs::metadata(d.join(p)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(""), 0o700);
        assert_eq!(mode("kumo.db"), 0o600);
        assert_eq!(mode("instances/x/serial.log"), 0o600);
        assert_eq!(secure(&d), 0);
    }
}
