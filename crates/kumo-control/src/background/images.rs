//! The public image catalogue: every subdirectory of the machine-wide image cache
//! (`--image-cache`) that holds a `manifest.json` is a public image. A pass registers what is new
//! (a new image, or a new build of one: [`crate::app::images::seed_public`] tells them apart by
//! the manifest, which carries the recipe hash) and leaves the rest alone. The start-up pass runs
//! before the API serves, so the images built before kumod started are there at its first
//! request; later passes (every `--image-rescan-seconds`) pick up an image built while kumod runs
//! (`scripts/up.sh` builds `debian-12` in the background) without a restart.
//!
//! A build must appear in the cache whole: the recipes (images/*/build.sh) write into a staging
//! directory and rename it into place, manifest included, so a pass never sees half a build.

use super::{Error, Task};
use crate::App;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The cache's image directories (those with a manifest), in name order.
fn image_dirs(cache: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut dirs: Vec<PathBuf> =
        std::fs::read_dir(cache)?.flatten().map(|e| e.path()).filter(|d| d.join("manifest.json").is_file()).collect();
    dirs.sort();
    Ok(dirs)
}

/// One pass over the cache: registers new images and new builds; returns how many. An image that
/// cannot be registered is logged and does not stop the others (the pass then reports the error).
async fn pass(app: &App) -> Result<u64, Error> {
    let Some(cache) = &app.config.image_cache else { return Ok(0) };
    let dirs = match image_dirs(cache) {
        Ok(d) => d,
        // No cache (yet): nothing public to register; startup said so once.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(Error::Step(format!("read the image cache {}: {e}", cache.display()))),
    };
    let (mut registered, mut failed) = (0, Vec::new());
    for dir in dirs {
        match crate::app::images::seed_public(app, &dir).await {
            Ok(true) => registered += 1,
            Ok(false) => {}
            Err(e) => {
                tracing::warn!("could not register image {}: {e:#}", dir.display());
                failed.push(format!("{}: {e:#}", dir.display()));
            }
        }
    }
    if !failed.is_empty() {
        return Err(Error::Step(format!("could not register {}", failed.join("; "))));
    }
    Ok(registered)
}

/// The start-up pass (before the API serves). A missing cache is only worth a warning: the cloud
/// still runs, with the images tenants import.
pub async fn startup(app: &App) {
    if let Some(cache) = &app.config.image_cache {
        if !cache.is_dir() {
            tracing::warn!("no image cache at {}; build one with images/tiny/build.sh", cache.display());
        }
    }
    let _ = app.images.run_pass(pass(app)).await;
}

/// The periodic rescan (see [`super::spawn`]; its first pass is one period after the start).
pub struct Rescan;

impl Task for Rescan {
    async fn pass(&mut self, app: &Arc<App>) -> Result<u64, Error> {
        pass(app).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_directories_with_a_manifest_are_images() {
        let dir = tempfile::tempdir().expect("temp dir");
        for (name, manifest) in [("b", true), ("a", true), ("staging", false)] {
            std::fs::create_dir(dir.path().join(name)).expect("mkdir");
            if manifest {
                std::fs::write(dir.path().join(name).join("manifest.json"), "{}").expect("manifest");
            }
        }
        std::fs::write(dir.path().join("tiny.lock"), "").expect("lock file");
        let got = image_dirs(dir.path()).expect("scan");
        assert_eq!(got, vec![dir.path().join("a"), dir.path().join("b")]);
        assert!(image_dirs(&dir.path().join("missing")).is_err());
    }
}
