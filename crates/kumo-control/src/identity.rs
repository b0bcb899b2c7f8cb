//! Who this host is and which cloud its data directory belongs to, settled before anything else
//! runs (reconcilers, leak collection), so a renamed machine or a wrong `--database` can never
//! make kumod mistake its own guests for leaks.
//!
//! - `DATA_DIR/host-id`: the host's stable id, written once at the first start (0600). The host
//!   row is keyed by it; the name is only a label (`--host-name` or the machine's hostname), so a
//!   rename renames the row. A data directory from before host ids adopts the existing row (the
//!   one with this host's name, else the only host).
//! - `DATA_DIR/cloud-id` and the `cloud` table: the same id in both. A data directory whose id
//!   differs from the database's, or a database without an id (fresh, empty) while the data
//!   directory has one or holds guests or volumes, makes kumod refuse to start, naming both.

use anyhow::{bail, Context};
use kumo_store::Store;
use kumo_types::HostId;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use uuid::Uuid;

pub const HOST_ID_FILE: &str = "host-id";
pub const CLOUD_ID_FILE: &str = "cloud-id";

fn read_id(path: &Path) -> anyhow::Result<Option<Uuid>> {
    match std::fs::read_to_string(path) {
        Ok(s) => Uuid::parse_str(s.trim())
            .map(Some)
            .with_context(|| format!("{} does not hold an id; restore it from a backup", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("read {}", path.display())),
    }
}

/// Writes an id file once, durably (temporary name, fsync, rename), owner-only.
fn write_id(path: &Path, id: Uuid) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("write {}", tmp.display()))?;
    f.write_all(format!("{id}\n").as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, path).with_context(|| format!("install {}", path.display()))?;
    Ok(())
}

/// A database URL fit for a message: no password.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}://…@{}", &url[..s], &url[at + 1..]),
        _ => url.to_string(),
    }
}

/// Whether the data directory holds guests or volumes (a store that knows none of them is not
/// theirs).
fn holds_guest_data(data_dir: &Path) -> bool {
    let any = |dir: &Path, pred: &dyn Fn(&str) -> bool| {
        std::fs::read_dir(dir).map(|rd| rd.flatten().any(|e| e.file_name().to_str().is_some_and(pred))).unwrap_or(false)
    };
    any(&data_dir.join("instances"), &|n| Uuid::parse_str(n).is_ok())
        || any(&data_dir.join("volumes"), &|n| n.ends_with(".qcow2"))
        || any(&data_dir.join("volumes/keys"), &|n| n.ends_with(".key"))
}

/// Checks that the data directory and the store belong to the same cloud (writing the id on the
/// first start); returns the cloud id. Errors say what differs and what to do.
pub async fn check_cloud(store: &Store, data_dir: &Path, db_url: &str) -> anyhow::Result<Uuid> {
    let file = data_dir.join(CLOUD_ID_FILE);
    let in_dir = read_id(&file)?;
    let mut tx = store.begin().await?;
    let in_db = kumo_store::cloud::id(&mut tx).await?;
    let db = redact(db_url);
    let dir = data_dir.display();
    match (in_dir, in_db) {
        (Some(d), Some(s)) if d == s => Ok(d),
        (Some(d), Some(s)) => bail!(
            "refusing to start: the data directory {dir} belongs to cloud {d} ({dir}/{CLOUD_ID_FILE}) but the \
             database {db} belongs to cloud {s}. Start kumod with the --database this data directory was used \
             with (or the data directory of that database); nothing was changed"
        ),
        (Some(d), None) => bail!(
            "refusing to start: the data directory {dir} belongs to cloud {d} ({dir}/{CLOUD_ID_FILE}) but the \
             database {db} has no cloud id: it is a fresh or empty database, not this cloud's. Start kumod with \
             the --database this data directory was used with (restore it from a backup if it is lost); \
             starting on an empty database would treat every guest and volume here as a leak. Nothing was changed"
        ),
        (None, Some(s)) => {
            if holds_guest_data(data_dir) {
                bail!(
                    "refusing to start: the data directory {dir} has no {CLOUD_ID_FILE} but holds guests or \
                     volumes, and the database {db} belongs to cloud {s}, which another data directory set up. \
                     Start kumod with this data directory's own database; nothing was changed"
                );
            }
            // A fresh data directory joining the cloud of its database.
            write_id(&file, s)?;
            tracing::info!(cloud = %s, "data directory joined the cloud of database {db}");
            Ok(s)
        }
        (None, None) => {
            // First start since cloud ids exist: a new cloud, or an existing pair being upgraded.
            if kumo_store::cloud::hosts_ever(&mut tx).await? == 0 && holds_guest_data(data_dir) {
                bail!(
                    "refusing to start: the data directory {dir} holds guests or volumes but the database {db} \
                     is empty (no host ever ran on it). Start kumod with the --database this data directory was \
                     used with; nothing was changed"
                );
            }
            let id = kumo_store::new_id();
            kumo_store::cloud::set_id(&mut tx, id).await?;
            tx.commit().await?;
            // The store first: a crash in between leaves (None, Some), which adopts this id.
            write_id(&file, id)?;
            tracing::info!(cloud = %id, "cloud id recorded in the data directory and the database");
            Ok(id)
        }
    }
}

/// This host's stable id: `DATA_DIR/host-id`, written at the first start (adopting the host row
/// of a data directory from before host ids).
pub async fn host_id(store: &Store, data_dir: &Path, name: &str) -> anyhow::Result<HostId> {
    let file = data_dir.join(HOST_ID_FILE);
    if let Some(id) = read_id(&file)? {
        return Ok(HostId::from(id));
    }
    let adopted = kumo_store::hosts::adoptable(&mut *store.read().await?, name).await?;
    let id = adopted.unwrap_or_else(kumo_store::new_id);
    write_id(&file, id.get())?;
    match adopted {
        Some(_) => {
            tracing::info!(host = %id, "adopted the existing host row; its id is now kept in {}", file.display())
        }
        None => tracing::info!(host = %id, "new host id written to {}", file.display()),
    }
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_reach_messages() {
        assert_eq!(redact("postgres://kumo:secret@db:5432/kumo"), "postgres://…@db:5432/kumo");
        assert_eq!(redact("sqlite:///var/lib/kumo/kumo.db"), "sqlite:///var/lib/kumo/kumo.db");
    }
}
