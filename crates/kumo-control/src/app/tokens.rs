//! API tokens: the bootstrap operator token.

use crate::context::{hash_token, new_token_secret};
use kumo_store::Store;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// On first start, creates the operator token and writes it to `DATA_DIR/admin-token` (mode 0600).
/// On later starts, makes sure the token in that file is known (e.g. after restoring a backup of
/// the file alone) and leaves it as it is.
pub async fn bootstrap_admin_token(store: &Store, data_dir: &Path) -> anyhow::Result<()> {
    let path = data_dir.join("admin-token");
    let existing = std::fs::read_to_string(&path).ok().map(|s| s.trim().to_string()).filter(|s| !s.is_empty());
    let secret = match existing {
        Some(s) => s,
        None => {
            let s = new_token_secret();
            // Write to a temporary file first: a crash never leaves a truncated token file.
            let tmp = data_dir.join("admin-token.tmp");
            let mut f = std::fs::OpenOptions::new().create(true).write(true).truncate(true).mode(0o600).open(&tmp)?;
            f.write_all(format!("{s}\n").as_bytes())?;
            f.sync_all()?;
            std::fs::rename(&tmp, &path)?;
            tracing::info!("wrote the operator token to {}", path.display());
            s
        }
    };
    let hash = hash_token(&secret);
    let mut conn = store.read().await?;
    if kumo_store::tokens::lookup(&mut conn, &hash).await?.is_none() {
        drop(conn);
        let mut tx = store.begin().await?;
        kumo_store::tokens::insert(&mut tx, "admin", &hash, "operator").await?;
        tx.commit().await?;
    }
    Ok(())
}
