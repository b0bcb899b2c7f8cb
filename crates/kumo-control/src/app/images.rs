//! Images: the public catalogue (seeded from the machine-wide image cache) and tenant imports.
//!
//! Image files live in `DATA_DIR/images/<id>/`. Imports stream the upload to a temporary file
//! (never whole in memory), detect the format from the content with `qemu-img info` (never from
//! a file name), accept qcow2, raw, vmdk and vhdx, refuse anything that would make qemu-img read
//! other files of the host (see [`refuse_unsafe`]), check qcow2 metadata, and convert to a
//! standalone qcow2. qemu-img runs on the host, through its agent: files of the image store are
//! named to it by image id and file name ([`ImageFile`]), never by path.

use super::{read, selector};
use crate::context::{Access, OpContext};
use crate::error::{already_exists, ApiError, ApiResult};
use crate::App;
use futures_util::{Stream, StreamExt};
use kumo_host_api::{ImageFile, ImageInfo};
use kumo_store::images::NewImage;
use kumo_types::page::PageRequest;
use kumo_types::{ImageBoot, ImageCreate, ImageFacts, ImageView, Name, ResultsPage};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use tokio::io::AsyncWriteExt;

pub async fn list(
    app: &App,
    ctx: &OpContext,
    project: Option<&str>,
    page: &PageRequest,
) -> ApiResult<ResultsPage<ImageView>> {
    ctx.authorize(Access::Read)?;
    let mut conn = read(app).await?;
    let project_id = match project {
        Some(p) => Some(super::project(&mut conn, ctx, Some(p), Access::Read).await?.id),
        None => None,
    };
    Ok(kumo_store::images::list(&mut conn, project_id, page).await?)
}

pub async fn view(app: &App, ctx: &OpContext, project: Option<&str>, image: &str) -> ApiResult<ImageView> {
    ctx.authorize(Access::Read)?;
    let mut conn = read(app).await?;
    let project_id = match project {
        Some(p) => Some(super::project(&mut conn, ctx, Some(p), Access::Read).await?.id),
        None => None,
    };
    let sel = selector("image", image)?;
    Ok(kumo_store::images::get(&mut conn, project_id, &sel)
        .await?
        .ok_or_else(|| ApiError::not_found("image", image))?
        .view)
}

pub async fn delete(app: &App, ctx: &OpContext, project: Option<&str>, image: &str) -> ApiResult<()> {
    let mut tx = app.store.begin().await?;
    let project_id = match project {
        Some(p) => Some(super::project(&mut tx, ctx, Some(p), Access::Write).await?.id),
        None => None,
    };
    let sel = selector("image", image)?;
    let rec =
        kumo_store::images::get(&mut tx, project_id, &sel).await?.ok_or_else(|| ApiError::not_found("image", image))?;
    // Public images belong to the operator; project images to the project.
    ctx.authorize(if rec.project_id.is_none() { Access::Operator } else { Access::Write })?;
    let users = kumo_store::images::count_users(&mut tx, rec.view.id).await?;
    if users > 0 {
        return Err(ApiError::conflict(format!(
            "image '{image}' backs the disks of {users} instance(s) or volume(s); delete them first"
        )));
    }
    if kumo_store::images::soft_delete(&mut tx, rec.view.id).await? {
        if let Some(pid) = rec.project_id {
            kumo_store::quotas::release(&mut tx, pid, super::quotas::image_amounts(rec.view.size_bytes)).await?;
        }
    }
    tx.commit().await.map_err(ApiError::internal)?;
    // A crash here leaves the directory of a deleted image: the orphan sweep's (see crate::background::sweep).
    kumo_agent::system::fault::point("image.delete.committed");
    let dir = app.config.images_dir().join(rec.view.id.to_string());
    if let Err(e) = tokio::fs::remove_dir_all(&dir).await {
        tracing::warn!("could not remove {}: {e}", dir.display());
    }
    Ok(())
}

/// Copies a file, owner-only (a plain copy would keep the source's mode, e.g. 0644 from the
/// image cache; see crate::modes).
async fn copy_private(src: &Path, dst: &Path) -> std::io::Result<u64> {
    use std::os::unix::fs::PermissionsExt;
    let n = tokio::fs::copy(src, dst).await?;
    tokio::fs::set_permissions(dst, std::fs::Permissions::from_mode(0o600)).await?;
    Ok(n)
}

/// Removes a directory on drop unless disarmed: a failed import leaves nothing behind. Until
/// dropped it marks the directory in flight, so the periodic orphan sweep leaves it alone while
/// it has no record yet.
struct DirGuard(Option<PathBuf>, #[allow(dead_code)] crate::background::sweep::InFlightGuard);

impl DirGuard {
    fn new(app: &App, dir: &Path) -> DirGuard {
        DirGuard(Some(dir.to_path_buf()), app.in_flight.hold(dir))
    }
}

impl Drop for DirGuard {
    fn drop(&mut self) {
        if let Some(d) = self.0.take() {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

/// The first file other than the upload that qemu-img's error says it could not open
/// (`Could not open '/etc/shadow': Permission denied`): the confined qemu-img was refused it.
fn other_file_named(error: &str) -> Option<String> {
    error
        .split("Could not open '")
        .skip(1)
        .filter_map(|rest| rest.split_once('\'').map(|(name, _)| name))
        .find(|name| *name != UPLOAD)
        .map(String::from)
}

/// File names of an import in the image's directory.
const UPLOAD: &str = "upload";
const DISK: &str = "disk.qcow2";

/// Imports an uploaded disk image into a project, with the OS facts its uploader gives (checked
/// before a byte of the upload is read: a refused import leaves nothing behind).
pub async fn import<S, E>(
    app: &App,
    ctx: &OpContext,
    project: Option<&str>,
    name: &str,
    description: &str,
    facts: &ImageFacts,
    body: S,
) -> ApiResult<ImageView>
where
    S: Stream<Item = Result<axum::body::Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    let name = Name::parse(name).map_err(|e| ApiError::invalid(format!("image: {e}")))?;
    super::check_description(description)?;
    facts.validate().map_err(ApiError::invalid)?;
    let proj = super::project(&mut *read(app).await?, ctx, project, Access::Write).await?;
    app.storage_host()?;
    if kumo_store::images::get(&mut *read(app).await?, Some(proj.id), &kumo_types::NameOrId::Name(name.clone()))
        .await?
        .is_some_and(|i| i.project_id == Some(proj.id))
    {
        return Err(ApiError::new(
            kumo_types::ErrorCode::ObjectAlreadyExists,
            format!("image '{name}' already exists in project '{}'", proj.name),
        ));
    }
    // A full quota is refused before the upload fills the disk.
    super::quotas::precheck(&mut *read(app).await?, proj.id, &proj.name, super::quotas::image_amounts(0)).await?;

    let id = kumo_store::images::allocate_id();
    let dir = app.config.images_dir().join(id.to_string());
    tokio::fs::create_dir_all(&dir).await.map_err(ApiError::internal)?;
    let mut guard = DirGuard::new(app, &dir);
    let upload = dir.join(UPLOAD);
    let size = receive(body, &upload, app.config.max_image_bytes).await?;
    // A crash here leaves a half-finished upload with no record: the orphan sweep's.
    kumo_agent::system::fault::point("image.import.received");
    if size == 0 {
        return Err(ApiError::invalid("the uploaded image is empty"));
    }
    // qemu-img runs confined on the upload (see kumo_agent::storage::qemu_img::untrusted), with names
    // relative to the image's directory.
    let info = app.agent().inspect_upload(ImageFile::new(id, UPLOAD)).await.map_err(|e| {
        let text = e.to_string();
        let message = if text.contains("timed out") {
            "qemu-img could not read the image in time (does it name a FIFO, a device or another file?); \
             upload a standalone image"
                .to_string()
        } else if let Some(other) = other_file_named(&text) {
            format!("the image refers to other files of the host ({other}); upload a standalone, single-file image")
        } else {
            "the upload is not a disk image qemu-img can read".to_string()
        };
        ApiError { internal: Some(text), ..ApiError::invalid(message) }
    })?;
    refuse_unsafe(&info, Path::new(UPLOAD))?;
    if info.format == "qcow2" {
        app.agent().check_upload(ImageFile::new(id, UPLOAD)).await.map_err(|e| ApiError {
            internal: Some(e.to_string()),
            ..ApiError::invalid("the qcow2 image is corrupt (qemu-img check failed)")
        })?;
    }
    let disk = dir.join(DISK);
    // The output holds at most the virtual size, plus qcow2 metadata.
    let max_out = IMPORT_MAX_VIRTUAL_BYTES + (1 << 30);
    app.agent()
        .convert_upload(ImageFile::new(id, UPLOAD), info.format.clone(), ImageFile::new(id, DISK), max_out)
        .await
        .map_err(ApiError::internal)?;
    let _ = tokio::fs::remove_file(&upload).await;
    let disk_path = disk.to_string_lossy().into_owned();
    let os = format!("imported ({}, {} bytes uploaded)", info.format, size);
    let new = NewImage {
        id,
        project_id: Some(proj.id),
        name: name.as_str(),
        description,
        os: &os,
        boot: ImageBoot::Disk,
        disk_path: &disk_path,
        kernel_path: None,
        initrd_path: None,
        cmdline: None,
        size_bytes: info.virtual_size as i64,
        facts: facts.clone(),
    };
    let mut tx = app.store.begin().await?;
    let rec = kumo_store::images::insert(&mut tx, &new).await.map_err(already_exists("image", name.as_str()))?;
    super::quotas::charge(&mut tx, proj.id, &proj.name, super::quotas::image_amounts(new.size_bytes)).await?;
    tx.commit().await.map_err(ApiError::internal)?;
    guard.0 = None;
    Ok(rec.view)
}

/// Makes a project image from a snapshot (a standalone copy of the volume's data at that
/// instant; boots from the disk) or from a stopped instance's root disk (boots like the instance:
/// its image's kernel, initrd and command line are copied along).
pub async fn create(app: &App, ctx: &OpContext, project: Option<&str>, p: &ImageCreate) -> ApiResult<ImageView> {
    super::check_description(&p.description)?;
    let mut conn = read(app).await?;
    let proj = super::project(&mut conn, ctx, project, Access::Write).await?;
    app.storage_host()?;
    if kumo_store::images::get(&mut conn, Some(proj.id), &kumo_types::NameOrId::Name(p.name.clone()))
        .await?
        .is_some_and(|i| i.project_id == Some(proj.id))
    {
        return Err(ApiError::new(
            kumo_types::ErrorCode::ObjectAlreadyExists,
            format!("image '{}' already exists in project '{}'", p.name, proj.name),
        ));
    }
    super::quotas::precheck(&mut conn, proj.id, &proj.name, super::quotas::image_amounts(0)).await?;
    let id = kumo_store::images::allocate_id();
    let dir = app.config.images_dir().join(id.to_string());
    let disk = dir.join(DISK);
    let (boot_from, os) = match (&p.source_snapshot, &p.source_instance) {
        (Some(snapshot), None) => {
            let snap = super::snapshots::source(&mut conn, proj.id, snapshot).await?;
            tokio::fs::create_dir_all(&dir).await.map_err(ApiError::internal)?;
            let guard = DirGuard::new(app, &dir);
            app.agent().export_snapshot(snap.view.id, ImageFile::new(id, DISK)).await.map_err(ApiError::internal)?;
            (guard, format!("from snapshot '{}' of volume '{}'", snap.view.name, snap.view.volume))
        }
        (None, Some(instance)) => {
            let inst = super::instances::get(&mut conn, ctx, Some(&proj.name), instance, Access::Write).await?;
            if inst.state() != kumo_types::InstanceState::Stopped {
                return Err(ApiError::conflict(format!(
                    "cannot make an image of instance '{instance}' in state '{}': stop it first",
                    inst.state()
                )));
            }
            tokio::fs::create_dir_all(&dir).await.map_err(ApiError::internal)?;
            let guard = DirGuard::new(app, &dir);
            app.agent().export_root_disk(inst.view.id, ImageFile::new(id, DISK)).await.map_err(ApiError::internal)?;
            (guard, format!("from instance '{}' (image '{}')", inst.view.name, inst.view.image))
        }
        _ => return Err(ApiError::invalid("give exactly one of source_snapshot and source_instance")),
    };
    let mut guard = boot_from;
    // An instance's image boots by kernel: the new image gets copies of its boot files.
    let (mut kernel, mut initrd, mut cmdline) = (None, None, None);
    // …and its OS facts (same OS, same default user, same minimums).
    let mut facts = ImageFacts::default();
    if let Some(instance) = &p.source_instance {
        let inst = super::instances::get(&mut conn, ctx, Some(&proj.name), instance, Access::Write).await?;
        if let Some(img) = kumo_store::images::get_by_id(&mut conn, inst.image_id).await? {
            let copy = |src: &Option<String>, name: &str| {
                let (src, dst) = (src.clone(), dir.join(name));
                async move {
                    match src {
                        Some(s) => copy_private(Path::new(&s), &dst)
                            .await
                            .map(|_| Some(dst.to_string_lossy().into_owned()))
                            .map_err(ApiError::internal),
                        None => Ok(None),
                    }
                }
            };
            kernel = copy(&img.kernel_path, "vmlinuz").await?;
            initrd = copy(&img.initrd_path, "initrd.img").await?;
            cmdline = img.cmdline.clone();
            facts = img.view.os_facts.clone();
        }
    }
    let info = app.agent().image_info(ImageFile::new(id, DISK)).await.map_err(ApiError::internal)?;
    let disk_path = disk.to_string_lossy().into_owned();
    let new = NewImage {
        id,
        project_id: Some(proj.id),
        name: p.name.as_str(),
        description: &p.description,
        os: &os,
        boot: if kernel.is_some() { ImageBoot::Kernel } else { ImageBoot::Disk },
        disk_path: &disk_path,
        kernel_path: kernel.as_deref(),
        initrd_path: initrd.as_deref(),
        cmdline: cmdline.as_deref(),
        size_bytes: info.virtual_size as i64,
        facts,
    };
    let mut tx = app.store.begin().await?;
    let rec = kumo_store::images::insert(&mut tx, &new).await.map_err(already_exists("image", p.name.as_str()))?;
    super::quotas::charge(&mut tx, proj.id, &proj.name, super::quotas::image_amounts(new.size_bytes)).await?;
    tx.commit().await.map_err(ApiError::internal)?;
    guard.0 = None;
    Ok(rec.view)
}

/// The disk file of an image the caller may read, and its name for a download.
pub async fn export(app: &App, ctx: &OpContext, project: Option<&str>, image: &str) -> ApiResult<(PathBuf, String)> {
    ctx.authorize(Access::Read)?;
    let mut conn = read(app).await?;
    let project_id = match project {
        Some(p) => Some(super::project(&mut conn, ctx, Some(p), Access::Read).await?.id),
        None => None,
    };
    let sel = selector("image", image)?;
    let rec = kumo_store::images::get(&mut conn, project_id, &sel)
        .await?
        .ok_or_else(|| ApiError::not_found("image", image))?;
    Ok((PathBuf::from(rec.disk_path), format!("{}.qcow2", rec.view.name)))
}

/// Largest virtual size an imported image may claim (a tiny file can claim exabytes).
pub const IMPORT_MAX_VIRTUAL_BYTES: u64 = (kumo_types::volume::VOLUME_MAX_GIB as u64) << 30;

/// Refuses what must never be converted: anything that makes qemu-img read other files of the
/// host (a qcow2 backing file or external data file, a vmdk whose extents are separate files —
/// a descriptor can name `/etc/shadow` as a flat extent — or a vmdk parent), formats we do not
/// import, and absurd virtual sizes. The format is what qemu-img detected from the content.
pub fn refuse_unsafe(info: &ImageInfo, upload: &Path) -> ApiResult<()> {
    match info.format.as_str() {
        "qcow2" | "raw" | "vmdk" | "vhdx" => {}
        other => {
            return Err(ApiError::invalid(format!(
                "image format '{other}' is not supported for import (qcow2, raw, vmdk and vhdx are)"
            )))
        }
    }
    if info.external_data_file().is_some() {
        return Err(ApiError::invalid(
            "the qcow2 image keeps its data in an external data file; upload a standalone image",
        ));
    }
    if info.backing_filename.is_some() {
        return Err(ApiError::invalid(format!(
            "the {} image has a backing file; upload a standalone image (qemu-img convert -O qcow2 in out)",
            info.format
        )));
    }
    if info.format == "vmdk" {
        let data = info.format_specific.as_ref().and_then(|f| f.get("data"));
        let create_type = data.and_then(|d| d.get("create-type")).and_then(|t| t.as_str()).unwrap_or("");
        if !matches!(create_type, "monolithicSparse" | "streamOptimized") {
            return Err(ApiError::invalid(format!(
                "vmdk images of type '{create_type}' keep their data in other files; upload a single-file                  vmdk (monolithicSparse or streamOptimized)"
            )));
        }
        let extents = data.and_then(|d| d.get("extents")).and_then(|e| e.as_array()).cloned().unwrap_or_default();
        let elsewhere =
            extents.iter().any(|e| e.get("filename").and_then(|f| f.as_str()).is_none_or(|f| Path::new(f) != upload));
        if elsewhere {
            return Err(ApiError::invalid("the vmdk image names extents in other files; upload a single-file vmdk"));
        }
        let parent = data.and_then(|d| d.get("parent-cid")).and_then(|p| p.as_u64()).unwrap_or(u32::MAX as u64);
        if parent != u32::MAX as u64 {
            return Err(ApiError::invalid("the vmdk image is a delta of a parent disk; upload a standalone image"));
        }
    }
    if info.virtual_size > IMPORT_MAX_VIRTUAL_BYTES {
        return Err(ApiError::invalid(format!(
            "the image claims a virtual size of {} bytes; at most {IMPORT_MAX_VIRTUAL_BYTES} are accepted",
            info.virtual_size
        )));
    }
    Ok(())
}

/// Streams a request body to `path`, refusing more than `max` bytes (413).
async fn receive<S, E>(mut body: S, path: &Path, max: u64) -> ApiResult<u64>
where
    S: Stream<Item = Result<axum::body::Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    let mut f = tokio::fs::File::create(path).await.map_err(ApiError::internal)?;
    let mut total: u64 = 0;
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| ApiError::invalid(format!("the upload was interrupted: {e}")))?;
        total += chunk.len() as u64;
        if total > max {
            return Err(ApiError::new(
                kumo_types::ErrorCode::PayloadTooLarge,
                format!("the image is larger than the {max} bytes this cloud accepts"),
            ));
        }
        f.write_all(&chunk).await.map_err(ApiError::internal)?;
    }
    f.sync_all().await.map_err(ApiError::internal)?;
    Ok(total)
}

/// `manifest.json` of a built image in the machine-wide cache (see images/tiny/build.sh).
#[derive(Debug, Deserialize)]
pub struct Manifest {
    pub name: String,
    pub os: String,
    pub kernel: Option<String>,
    pub initrd: Option<String>,
    pub disk: String,
    pub cmdline: Option<String>,
    /// Optional: shown in the catalogue (else a generic line naming the cache directory).
    #[serde(default)]
    pub description: Option<String>,
    /// The OS facts (images/debian/build.sh writes them all; tiny's manifest none).
    #[serde(flatten)]
    pub facts: ImageFacts,
}

/// The virtual size of a disk of the operator's image cache (trusted: never a tenant's upload), as a
/// controller without a host of its own reads it: a qcow2's header (magic `QFI\xfb`, the size as a
/// big-endian u64 at byte 24), else the file's length (raw).
async fn trusted_virtual_size(path: &Path) -> anyhow::Result<u64> {
    use tokio::io::AsyncReadExt;
    let mut f = tokio::fs::File::open(path).await.map_err(|e| anyhow::anyhow!("open {}: {e}", path.display()))?;
    let mut head = [0u8; 32];
    match f.read_exact(&mut head).await {
        Ok(_) if head[..4] == *b"QFI\xfb" => Ok(u64::from_be_bytes(head[24..32].try_into()?)),
        _ => Ok(f.metadata().await?.len()),
    }
}

/// Registers a cached image as a public image: its files are copied into the data directory so
/// the cloud does not depend on the cache staying put. When the cache holds a new build of an
/// image already registered (e.g. after `scripts/up.sh` rebuilt it), the new build takes the name;
/// the old one is removed when nothing uses it, else renamed `<name>-<first 8 hex of its id>`
/// (its files stay: running disks are backed by them). Returns whether it registered anything
/// (false: this build is registered already).
pub async fn seed_public(app: &App, cache_dir: &Path) -> anyhow::Result<bool> {
    let manifest_bytes = tokio::fs::read(cache_dir.join("manifest.json")).await?;
    let manifest: Manifest = serde_json::from_slice(&manifest_bytes)?;
    let name = Name::parse(&manifest.name).map_err(anyhow::Error::msg)?;
    let existing =
        kumo_store::images::get(&mut *app.store.read().await?, None, &kumo_types::NameOrId::Name(name.clone())).await?;
    if let Some(existing) = &existing {
        if same_build(existing, cache_dir, &manifest, &manifest_bytes).await {
            return Ok(false);
        }
    }
    let id = kumo_store::images::allocate_id();
    let dir = app.config.images_dir().join(id.to_string());
    tokio::fs::create_dir_all(&dir).await?;
    let mut guard = DirGuard::new(app, &dir);
    let copy = |file: &str| {
        let (src, dst) = (cache_dir.join(file), dir.join(file));
        async move {
            copy_private(&src, &dst).await.map_err(|e| anyhow::anyhow!("copy {}: {e}", src.display()))?;
            Ok::<String, anyhow::Error>(dst.to_string_lossy().into_owned())
        }
    };
    let disk_path = copy(&manifest.disk).await?;
    let kernel_path = match &manifest.kernel {
        Some(k) => Some(copy(k).await?),
        None => None,
    };
    let initrd_path = match &manifest.initrd {
        Some(i) => Some(copy(i).await?),
        None => None,
    };
    let size_bytes = match app.local_host() {
        Some(_) => app.agent().image_info(ImageFile::new(id, manifest.disk.as_str())).await?.virtual_size,
        // A controller has no host of its own to ask (its image store is not any host's yet):
        // the size is read from the operator's file itself.
        None => trusted_virtual_size(Path::new(&disk_path)).await?,
    };
    let default_description = format!("{} from the image cache ({})", manifest.name, cache_dir.display());
    let new = NewImage {
        id,
        project_id: None,
        name: name.as_str(),
        description: manifest.description.as_deref().unwrap_or(&default_description),
        os: &manifest.os,
        boot: if kernel_path.is_some() { ImageBoot::Kernel } else { ImageBoot::Disk },
        disk_path: &disk_path,
        kernel_path: kernel_path.as_deref(),
        initrd_path: initrd_path.as_deref(),
        cmdline: manifest.cmdline.as_deref(),
        size_bytes: size_bytes as i64,
        facts: manifest.facts.clone(),
    };
    tokio::fs::write(dir.join(MANIFEST), &manifest_bytes).await?;
    let mut tx = app.store.begin().await?;
    let mut retired_dir = None;
    if let Some(old) = &existing {
        if kumo_store::images::count_users(&mut tx, old.view.id).await? == 0 {
            kumo_store::images::soft_delete(&mut tx, old.view.id).await?;
            retired_dir = Path::new(&old.disk_path).parent().map(Path::to_path_buf);
        } else {
            let old_name = format!("{}-{}", old.view.name, &old.view.id.get().simple().to_string()[..8]);
            kumo_store::images::rename(&mut tx, old.view.id, &old_name).await?;
        }
    }
    let rec = kumo_store::images::insert(&mut tx, &new).await?;
    tx.commit().await?;
    guard.0 = None;
    if let Some(d) = retired_dir {
        if let Err(e) = tokio::fs::remove_dir_all(&d).await {
            tracing::warn!("could not remove {}: {e}", d.display());
        }
    }
    let how = if existing.is_some() { "a new build of " } else { "" };
    tracing::info!(image = %rec.view.name, "registered {how}public image from {}", cache_dir.display());
    Ok(true)
}

/// The manifest copied beside a seeded image's files, to recognise its build later.
const MANIFEST: &str = "manifest.json";

/// Whether a registered public image is the build in `cache_dir`: same manifest (which carries the
/// recipe hash), or — for images seeded before manifests were kept — the same file contents.
async fn same_build(
    existing: &kumo_store::images::ImageRecord,
    cache_dir: &Path,
    manifest: &Manifest,
    manifest_bytes: &[u8],
) -> bool {
    let Some(dir) = Path::new(&existing.disk_path).parent() else { return false };
    if let Ok(kept) = tokio::fs::read(dir.join(MANIFEST)).await {
        return kept == manifest_bytes;
    }
    let pairs = [
        (Some(&manifest.disk), Some(&existing.disk_path)),
        (manifest.kernel.as_ref(), existing.kernel_path.as_ref()),
        (manifest.initrd.as_ref(), existing.initrd_path.as_ref()),
    ];
    for pair in pairs {
        match pair {
            (None, None) => {}
            (Some(cached), Some(registered)) => {
                let (a, b) = (tokio::fs::read(cache_dir.join(cached)).await, tokio::fs::read(registered).await);
                if !matches!((a, b), (Ok(a), Ok(b)) if a == b) {
                    return false;
                }
            }
            _ => return false,
        }
    }
    // The same build: keep its manifest so the next start compares a few bytes.
    let _ = tokio::fs::write(dir.join(MANIFEST), manifest_bytes).await;
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(json: serde_json::Value) -> ImageInfo {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn the_other_file_qemu_img_was_refused_is_named() {
        let e = "qemu-img info failed (exit status: 1): qemu-img: Could not open 'upload': Could not open '/etc/shadow': Permission denied";
        assert_eq!(other_file_named(e).as_deref(), Some("/etc/shadow"));
        assert_eq!(other_file_named("qemu-img: Could not open 'upload': Image is not in qcow2 format"), None);
    }

    #[test]
    fn imports_that_would_read_other_host_files_are_refused() {
        let up = Path::new("/data/images/x/upload");
        let ok = |j| refuse_unsafe(&info(j), up).is_ok();
        assert!(ok(serde_json::json!({"format": "qcow2", "virtual-size": 1 << 20})));
        assert!(ok(serde_json::json!({"format": "vhdx", "virtual-size": 1 << 20})));
        assert!(ok(serde_json::json!({"format": "vmdk", "virtual-size": 1 << 20, "format-specific": {"type": "vmdk",
            "data": {"create-type": "monolithicSparse", "parent-cid": 4294967295u64,
                     "extents": [{"filename": "/data/images/x/upload"}]}}})));
        let refused = |j| refuse_unsafe(&info(j), up).unwrap_err().message;
        let m = refused(serde_json::json!({"format": "qcow2", "virtual-size": 1, "backing-filename": "/etc/shadow"}));
        assert!(m.contains("backing file"), "{m}");
        let m = refused(serde_json::json!({"format": "vmdk", "virtual-size": 1, "format-specific": {"type": "vmdk",
            "data": {"create-type": "monolithicFlat", "extents": [{"filename": "/etc/shadow"}]}}}));
        assert!(m.contains("monolithicFlat"), "{m}");
        let m = refused(serde_json::json!({"format": "vmdk", "virtual-size": 1, "format-specific": {"type": "vmdk",
            "data": {"create-type": "monolithicSparse", "extents": [{"filename": "/etc/shadow"}]}}}));
        assert!(m.contains("other files"), "{m}");
        let m = refused(serde_json::json!({"format": "qcow2", "virtual-size": 1u64 << 60}));
        assert!(m.contains("virtual size"), "{m}");
        let m = refused(serde_json::json!({"format": "dmg", "virtual-size": 1}));
        assert!(m.contains("not supported"), "{m}");
    }
}
