//! `kumo image …`: bootable images. Public images (no project) come from the operator; tenants
//! import their own into a project, streamed from disk with a progress bar.

use crate::cli::{parse_name, ListArgs, ProjectArg};
use crate::json::Json;
use crate::output::{self, age, bytes, list_table, or_dash, time_with_age, view_table};
use crate::Ctx;
use anyhow::{bail, Context, Result};
use chrono::Utc;
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use kumo_types::{ImageCreate, ImageFacts, ImageView, Name};
use reqwest::blocking::Body;
use serde_json::Value;
use std::io::{IsTerminal, Read};
use std::path::PathBuf;

#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// List public images, and a project's own when --project is given
    List {
        /// Also list this project's images
        #[arg(long, env = "KUMO_PROJECT", value_name = "PROJECT")]
        project: Option<String>,
        #[command(flatten)]
        list: ListArgs,
    },
    /// Show one image
    View {
        /// Image name or id
        image: String,
        /// Project of the image (omit for a public image)
        #[arg(long, env = "KUMO_PROJECT", value_name = "PROJECT")]
        project: Option<String>,
    },
    /// Delete a project's image
    Delete {
        /// Image name or id
        image: String,
        #[command(flatten)]
        project: ProjectArg,
    },
    /// Upload a disk image file into a project
    Import(ImageImportArgs),
    /// Make a project image from a snapshot or a stopped instance
    Create(ImageCreateArgs),
    /// Download an image's disk (qcow2) to a file
    Export(ImageExportArgs),
}

#[derive(Debug, Args)]
pub struct ImageCreateArgs {
    /// Name of the new image
    #[arg(value_parser = parse_name)]
    pub name: Name,
    #[command(flatten)]
    pub project: ProjectArg,
    /// From this snapshot (the volume's data at that instant)
    #[arg(long, value_name = "SNAPSHOT", conflicts_with = "from_instance", required_unless_present = "from_instance")]
    pub from_snapshot: Option<String>,
    /// From this stopped instance's root disk (boots like the instance)
    #[arg(long, value_name = "INSTANCE")]
    pub from_instance: Option<String>,
    /// Free-form description
    #[arg(long, default_value = "")]
    pub description: String,
}

#[derive(Debug, Args)]
pub struct ImageExportArgs {
    /// Image name or id
    pub image: String,
    /// Where to write the qcow2 file
    #[arg(long, value_name = "FILE")]
    pub file: PathBuf,
    /// Project of the image (omit for a public image)
    #[arg(long, env = "KUMO_PROJECT", value_name = "PROJECT")]
    pub project: Option<String>,
}

#[derive(Debug, Args)]
pub struct ImageImportArgs {
    /// The image file to upload (qcow2, raw, vmdk or vhdx: detected from the content)
    pub file: PathBuf,
    /// Name of the new image
    #[arg(long, value_parser = parse_name)]
    pub name: Name,
    #[command(flatten)]
    pub project: ProjectArg,
    /// Free-form description
    #[arg(long)]
    pub description: Option<String>,
    /// Distribution in the image, as os-release's ID (debian, ubuntu, rocky…)
    #[arg(long, value_name = "ID")]
    pub os_family: Option<String>,
    /// Its version, as os-release's VERSION_ID (12, 24.04…)
    #[arg(long, value_name = "VERSION", requires = "os_family")]
    pub os_version: Option<String>,
    /// The user cloud-init makes for the instance's SSH keys: `kumo instance ssh` logs in as it
    #[arg(long, value_name = "USER")]
    pub default_user: Option<String>,
    /// Smallest memory an instance of the image may have: smaller instance types are refused
    #[arg(long, value_name = "MIB")]
    pub min_memory_mib: Option<i64>,
    /// Smallest root disk: an instance's root disk is grown to it
    #[arg(long, value_name = "GIB")]
    pub min_disk_gib: Option<i64>,
}

pub fn run(ctx: &Ctx, command: &ImageCommand) -> Result<()> {
    match command {
        ImageCommand::List { project, list } => {
            let query = project_query(project.as_deref());
            let page = ctx.client.list_all(&["images"], &query, list.cap())?;
            ctx.show(&page, render_list)
        }
        ImageCommand::View { image, project } => {
            let found = ctx.client.get(&["images", image], &project_query(project.as_deref()))?;
            ctx.show(&found, render_view)
        }
        ImageCommand::Delete { image, project } => {
            ctx.client.delete(&["images", image], &[("project", &project.project)])?;
            ctx.done(&format!("deleted image {image}"));
            Ok(())
        }
        ImageCommand::Import(args) => {
            let created = import(ctx, args)?;
            ctx.show(&created, render_view)
        }
        ImageCommand::Create(a) => {
            let body = ImageCreate {
                name: a.name.clone(),
                description: a.description.clone(),
                source_snapshot: a.from_snapshot.clone(),
                source_instance: a.from_instance.clone(),
            };
            let created = ctx.client.post(&["images"], &[("project", a.project.project.as_str())], Some(&body))?;
            ctx.show(&created, render_view)
        }
        ImageCommand::Export(a) => export(ctx, a),
    }
}

/// Streams the image's disk to the file (through a temporary name: no half file on failure).
fn export(ctx: &Ctx, a: &ImageExportArgs) -> Result<()> {
    let mut response = ctx.client.get_stream(&["images", &a.image, "export"], &project_query(a.project.as_deref()))?;
    let tmp = a.file.with_extension("part");
    let mut out = std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    let written = std::io::copy(&mut response, &mut out).with_context(|| format!("downloading into {}", tmp.display()));
    let written = match written {
        Ok(n) => n,
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
    };
    out.sync_all()?;
    std::fs::rename(&tmp, &a.file).with_context(|| format!("renaming to {}", a.file.display()))?;
    ctx.done(&format!("wrote image {} to {} ({})", a.image, a.file.display(), bytes(written as i64)));
    Ok(())
}

fn project_query(project: Option<&str>) -> Vec<(&str, &str)> {
    project.map(|p| vec![("project", p)]).unwrap_or_default()
}

/// Streams the file as the request body: memory use stays flat whatever the image size.
fn import(ctx: &Ctx, args: &ImageImportArgs) -> Result<Json> {
    let path = &args.file;
    let file = std::fs::File::open(path).with_context(|| format!("opening image file {}", path.display()))?;
    let meta = file.metadata().with_context(|| format!("reading image file {}", path.display()))?;
    if !meta.is_file() {
        bail!("{} is not a regular file", path.display());
    }
    let size = meta.len();
    let bar = upload_bar(size);
    let reader = ProgressReader { inner: file, bar: bar.clone() };
    let mut query = vec![("project", args.project.project.as_str()), ("name", args.name.as_str())];
    if let Some(d) = &args.description {
        query.push(("description", d.as_str()));
    }
    // The OS facts go as they are: the server checks them (before reading the upload).
    let (mem, disk) = (args.min_memory_mib.map(|m| m.to_string()), args.min_disk_gib.map(|d| d.to_string()));
    let facts = [
        ("os_family", args.os_family.as_deref()),
        ("os_version", args.os_version.as_deref()),
        ("default_user", args.default_user.as_deref()),
        ("min_memory_mib", mem.as_deref()),
        ("min_disk_gib", disk.as_deref()),
    ];
    query.extend(facts.into_iter().filter_map(|(k, v)| v.map(|v| (k, v))));
    let result = ctx.client.post_stream(&["images", "import"], &query, Body::sized(reader, size));
    bar.finish_and_clear();
    Ok(result?)
}

fn upload_bar(size: u64) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(size);
    let template = "uploading {bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}";
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style);
    }
    bar
}

/// A reader that advances a progress bar by what is read through it.
struct ProgressReader<R> {
    inner: R,
    bar: ProgressBar,
}

impl<R: Read> Read for ProgressReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.bar.inc(n as u64);
        Ok(n)
    }
}

fn render_list(page: &Value) -> Result<String> {
    let now = Utc::now();
    let mut table = list_table(&["NAME", "PROJECT", "DISTRIBUTION", "USER", "MINIMUM", "BOOT", "SIZE", "AGE"]);
    for i in output::items::<ImageView>(page)? {
        table.add_row(vec![
            i.name,
            i.project.unwrap_or_else(|| "(public)".into()),
            distribution(&i.os_facts),
            or_dash(i.os_facts.default_user.as_deref()),
            minimum(&i.os_facts),
            i.boot.as_str().to_string(),
            bytes(i.size_bytes),
            age(i.time_created, now),
        ]);
    }
    Ok(output::render(&table))
}

/// `debian 12`, or `-` when the image says nothing.
fn distribution(f: &ImageFacts) -> String {
    match (&f.os_family, &f.os_version) {
        (Some(family), Some(version)) => format!("{family} {version}"),
        (Some(family), None) => family.clone(),
        _ => "-".into(),
    }
}

/// `512 MiB, 2 GiB`: the smallest memory and root disk an instance of the image may have.
fn minimum(f: &ImageFacts) -> String {
    match (f.min_memory_mib, f.min_disk_gib) {
        (None, None) => "-".into(),
        (m, d) => {
            let m = m.map_or("-".into(), |m| format!("{m} MiB"));
            let d = d.map_or("-".into(), |d| format!("{d} GiB"));
            format!("{m}, {d}")
        }
    }
}

fn render_view(value: &Value) -> Result<String> {
    let i: ImageView = output::view(value)?;
    let now = Utc::now();
    let table = view_table(vec![
        ("NAME", i.name),
        ("ID", i.id.to_string()),
        ("PROJECT", i.project.unwrap_or_else(|| "(public)".into())),
        ("DESCRIPTION", or_dash(Some(&i.description))),
        ("OS", or_dash(Some(&i.os))),
        ("DISTRIBUTION", distribution(&i.os_facts)),
        ("DEFAULT USER", or_dash(i.os_facts.default_user.as_deref())),
        ("MINIMUM", minimum(&i.os_facts)),
        ("BOOT", i.boot.as_str().to_string()),
        ("SIZE", format!("{} ({} bytes)", bytes(i.size_bytes), i.size_bytes)),
        ("CREATED", time_with_age(i.time_created, now)),
        ("MODIFIED", time_with_age(i.time_modified, now)),
    ]);
    Ok(output::render(&table))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::Client;
    use crate::output::OutputFormat;
    use crate::testserver::{Reply, TestServer};
    use serde_json::json;

    fn sample_image(project: Option<&str>) -> Value {
        json!({
            "id": "0190b2a4-0000-7000-8000-000000000002", "name": "tiny", "description": "test image",
            "time_created": "2024-05-01T10:00:00Z", "time_modified": "2024-05-01T10:00:00Z",
            "project": project, "os": "linux", "boot": "kernel", "size_bytes": 1073741824_i64
        })
    }

    #[test]
    fn os_facts_are_shown() {
        let mut debian = sample_image(None);
        debian["name"] = json!("debian-12");
        debian["os_facts"] = json!({"os_family": "debian", "os_version": "12", "default_user": "debian",
            "min_memory_mib": 512, "min_disk_gib": 2});
        let page = json!({"items": [debian.clone(), sample_image(None)], "next_page": null});
        let text = render_list(&page).expect("render");
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].contains("DISTRIBUTION") && lines[0].contains("USER"), "{text}");
        assert!(lines[1].contains("debian 12") && lines[1].contains("512 MiB, 2 GiB"), "{text}");
        let view = render_view(&debian).expect("render");
        assert!(view.contains("DEFAULT USER") && view.contains("debian 12"), "{view}");
    }

    #[test]
    fn public_images_are_marked() {
        let page = json!({"items": [sample_image(None), sample_image(Some("demo"))], "next_page": null});
        let text = render_list(&page).expect("render");
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[1].contains("(public)") && lines[1].contains("1.0 GiB"), "{text}");
        assert!(lines[2].contains("demo"), "{text}");
    }

    #[test]
    fn import_streams_the_file_with_its_query() {
        let server = TestServer::start(|_| Reply::json(201, &sample_image(Some("demo")).to_string()));
        let dir = std::env::temp_dir().join(format!("kumo-cli-import-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("dir");
        let file = dir.join("disk.img");
        let content: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&file, &content).expect("write");
        let ctx = Ctx { client: Client::new(&server.url(), "t").expect("client"), output: OutputFormat::Json };
        let args = ImageImportArgs {
            file,
            name: Name::parse("tiny").expect("name"),
            project: ProjectArg { project: "demo".into() },
            description: Some("a b&c".into()),
            os_family: None,
            os_version: None,
            default_user: None,
            min_memory_mib: None,
            min_disk_gib: None,
        };
        let created = import(&ctx, &args).expect("import");
        assert_eq!(created.get("name").and_then(Json::as_str), Some("tiny"));
        let req = &server.requests()[0];
        assert_eq!((req.method.as_str(), req.path.as_str()), ("POST", "/v1/images/import"));
        assert_eq!(req.query_param("description").as_deref(), Some("a b&c"));
        assert_eq!(req.query_param("project").as_deref(), Some("demo"));
        assert_eq!(req.header("content-type").as_deref(), Some("application/octet-stream"));
        assert_eq!(req.body, content);
        assert_eq!(req.query_param("default_user"), None, "no facts given, none sent");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn import_flags_reach_the_query_as_os_facts() {
        use clap::Parser;
        let server = TestServer::start(|_| Reply::json(201, &sample_image(Some("demo")).to_string()));
        let dir = std::env::temp_dir().join(format!("kumo-cli-import-facts-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("dir");
        let file = dir.join("disk.qcow2");
        std::fs::write(&file, b"not really a disk").expect("write");
        let cli = crate::cli::Cli::try_parse_from([
            "kumo",
            "image",
            "import",
            file.to_str().expect("path"),
            "--name",
            "mydebian",
            "--project",
            "demo",
            "--os-family",
            "debian",
            "--os-version",
            "12",
            "--default-user",
            "debian",
            "--min-memory-mib",
            "512",
            "--min-disk-gib",
            "2",
        ])
        .expect("parse");
        let crate::cli::Command::Image(ImageCommand::Import(args)) = cli.command else {
            panic!("not an image import: {:?}", cli.command)
        };
        let ctx = Ctx { client: Client::new(&server.url(), "t").expect("client"), output: OutputFormat::Json };
        import(&ctx, &args).expect("import");
        let req = &server.requests()[0];
        let q = |k: &str| req.query_param(k);
        assert_eq!(q("name").as_deref(), Some("mydebian"));
        assert_eq!(q("os_family").as_deref(), Some("debian"));
        assert_eq!(q("os_version").as_deref(), Some("12"));
        assert_eq!(q("default_user").as_deref(), Some("debian"));
        assert_eq!(q("min_memory_mib").as_deref(), Some("512"));
        assert_eq!(q("min_disk_gib").as_deref(), Some("2"));
        let _ = std::fs::remove_dir_all(&dir);
        // A version without its distribution is caught by the CLI already.
        let e = crate::cli::Cli::try_parse_from([
            "kumo",
            "image",
            "import",
            "f",
            "--name",
            "x",
            "--project",
            "p",
            "--os-version",
            "12",
        ])
        .expect_err("--os-version without --os-family");
        assert!(e.to_string().contains("--os-family"), "{e}");
    }
}
