//! `kumo bucket …`: a project's object storage buckets, what they hold and who may read them. The
//! objects themselves are reached with any S3 client (aws, rclone, s3cmd, boto3) and an access key
//! (`kumo access-key create`).

use crate::cli::{ListArgs, ProjectArg};
use crate::output::{self, list_table, timestamp, view_table};
use crate::Ctx;
use anyhow::Result;
use clap::{Args, Subcommand};
use kumo_types::{BucketCreate, BucketUpdate, BucketVersioning, BucketView};
use serde_json::Value;

#[derive(Debug, Subcommand)]
pub enum BucketCommand {
    /// Create a bucket (its name is unique on the whole endpoint)
    Create {
        /// Bucket name: 3-63 lower-case letters, digits, dots and hyphens
        name: String,
        #[command(flatten)]
        project: ProjectArg,
        /// Let anyone read its objects
        #[arg(long)]
        public_read: bool,
    },
    /// Delete an empty bucket
    Delete(BucketRef),
    /// List a project's buckets: objects, size, who may read
    List {
        #[command(flatten)]
        project: ProjectArg,
        #[command(flatten)]
        list: ListArgs,
    },
    /// Show one bucket
    View(BucketRef),
    /// Let anyone read a bucket's objects or only the project (owners of the project), or keep
    /// versions of its objects
    Update {
        #[command(flatten)]
        bucket: BucketRef,
        /// public-read (anyone may read its objects) or private (only the project's members)
        #[arg(long, value_parser = ["public-read", "private"], required_unless_present = "versioning")]
        acl: Option<String>,
        /// enabled (every write keeps the version it replaces) or suspended (no new versions)
        #[arg(long, value_parser = ["enabled", "suspended"])]
        versioning: Option<String>,
    },
}

#[derive(Debug, Args)]
pub struct BucketRef {
    /// Bucket name
    pub bucket: String,
    #[command(flatten)]
    pub project: ProjectArg,
}

pub fn run(ctx: &Ctx, command: &BucketCommand) -> Result<()> {
    match command {
        BucketCommand::Create { name, project, public_read } => {
            let body = BucketCreate { name: name.clone(), public_read: *public_read };
            let created = ctx.client.post(&["buckets"], &[("project", project.project.as_str())], Some(&body))?;
            ctx.show(&created, render_view)
        }
        BucketCommand::Delete(r) => {
            ctx.client.delete(&["buckets", &r.bucket], &[("project", &r.project.project)])?;
            ctx.done(&format!("deleted bucket {}", r.bucket));
            Ok(())
        }
        BucketCommand::List { project, list } => {
            let page = ctx.client.list_all(&["buckets"], &[("project", &project.project)], list.cap())?;
            ctx.show(&page, render_list)
        }
        BucketCommand::View(r) => {
            let found = ctx.client.get(&["buckets", &r.bucket], &[("project", &r.project.project)])?;
            ctx.show(&found, render_view)
        }
        BucketCommand::Update { bucket, acl, versioning } => {
            let body = BucketUpdate {
                public_read: acl.as_ref().map(|a| a == "public-read"),
                versioning: versioning.as_deref().map(|v| {
                    if v == "enabled" {
                        BucketVersioning::Enabled
                    } else {
                        BucketVersioning::Suspended
                    }
                }),
            };
            let updated =
                ctx.client.put(&["buckets", &bucket.bucket], &[("project", &bucket.project.project)], &body)?;
            ctx.show(&updated, render_view)
        }
    }
}

fn acl(public_read: bool) -> String {
    if public_read { "public-read" } else { "private" }.to_string()
}

fn render_list(page: &Value) -> Result<String> {
    let mut table = list_table(&["NAME", "OBJECTS", "SIZE", "COST (MONTH)", "ACL", "UPLOADS", "CREATED"]);
    for b in output::items::<BucketView>(page)? {
        table.add_row(vec![
            b.name,
            b.objects.to_string(),
            output::bytes(b.bytes as i64),
            kumo_types::money::format_cents(b.cost_month_to_date),
            acl(b.public_read),
            b.uploads.to_string(),
            timestamp(b.time_created),
        ]);
    }
    Ok(output::render(&table))
}

fn render_view(value: &Value) -> Result<String> {
    let b: BucketView = output::view(value)?;
    let rows = vec![
        ("NAME", b.name),
        ("ID", b.id.to_string()),
        ("PROJECT", b.project),
        ("ACL", acl(b.public_read)),
        ("VERSIONING", b.versioning.unwrap_or_else(|| "off".into())),
        ("OBJECTS", b.objects.to_string()),
        ("SIZE (ALL VERSIONS)", output::bytes(b.bytes as i64)),
        ("UPLOADS IN PROGRESS", b.uploads.to_string()),
        ("COST THIS MONTH", kumo_types::money::format_cents(b.cost_month_to_date)),
        ("CREATED", timestamp(b.time_created)),
    ];
    Ok(output::render(&view_table(rows)))
}
