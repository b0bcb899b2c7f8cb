//! `kumo instance …`: virtual machines. Actions answer 202 with the transitional state; `--wait`
//! (see wait.rs) polls until the instance has settled. The serial console is in serial.rs.

use crate::cli::{parse_name, ListArgs, ProjectArg};
use crate::json::Json;
use crate::output::{self, age, list_table, or_dash, time_with_age, view_table};
use crate::serial::{self, SerialArgs};
use crate::wait::{maybe_wait, Target, WaitArgs};
use crate::Ctx;
use anyhow::{bail, Context, Result};
use chrono::Utc;
use clap::{Args, Subcommand};
use kumo_types::{
    InstanceCreate, InstanceMigrate, InstanceResize, InstanceState, InstanceView, Name, USER_DATA_MAX_BYTES,
};
use serde_json::Value;
use std::path::{Path, PathBuf};

#[derive(Debug, Subcommand)]
pub enum InstanceCommand {
    /// List a project's instances
    List {
        #[command(flatten)]
        project: ProjectArg,
        #[command(flatten)]
        list: ListArgs,
    },
    /// Create an instance (and start it)
    Create(InstanceCreateArgs),
    /// Show one instance
    View(InstanceRef),
    /// Start a stopped or failed instance
    Start(InstanceActionArgs),
    /// Power an instance off (ACPI, then forced after a deadline)
    Stop(InstanceActionArgs),
    /// Reset a running instance
    Reboot(InstanceActionArgs),
    /// Delete an instance and everything it holds on its host
    Delete(InstanceActionArgs),
    /// Change the instance type of a stopped instance
    Resize(InstanceResizeArgs),
    /// Move an instance to another host (operators): stopped, its root disk copied, started
    /// there again if it ran; it keeps its name, id, IP and MAC
    Migrate(InstanceMigrateArgs),
    /// Print the serial console log
    Serial(SerialArgs),
    /// SSH into an instance through its floating IP, as its image's default user
    Ssh(crate::ssh::SshArgs),
    /// Show one metric of an instance over time (cpu, memory, disk_read, disk_write, net_rx, net_tx)
    Metrics(crate::metrics::MetricsArgs),
}

#[derive(Debug, Args)]
pub struct InstanceCreateArgs {
    /// Name of the new instance
    #[arg(value_parser = parse_name)]
    pub name: Name,
    #[command(flatten)]
    pub project: ProjectArg,
    /// Image to boot from (name or id)
    #[arg(long)]
    pub image: String,
    /// Instance type (plan)
    #[arg(long = "type", value_name = "TYPE")]
    pub instance_type: String,
    /// Free-form description
    #[arg(long, default_value = "")]
    pub description: String,
    /// Shell script the guest runs once at boot (at most 32 KiB)
    #[arg(long, value_name = "FILE")]
    pub user_data_file: Option<PathBuf>,
    /// Root disk size in GiB, to make it larger than the instance type's
    #[arg(long, value_name = "GIB")]
    pub root_size: Option<i64>,
    /// VPC (default: the project's `default` VPC)
    #[arg(long)]
    pub vpc: Option<String>,
    /// Subnet of the VPC (default: `default`, or the VPC's only subnet)
    #[arg(long)]
    pub subnet: Option<String>,
    /// Security group (repeat for several; default: the project's `default` group)
    #[arg(long = "security-group", value_name = "GROUP")]
    pub security_groups: Vec<String>,
    /// SSH key the guest gets through the metadata service (repeat for several)
    #[arg(long = "ssh-key", value_name = "KEY")]
    pub ssh_keys: Vec<String>,
    /// Zone to place the instance in (default: any; see `kumo zone list`)
    #[arg(long)]
    pub zone: Option<String>,
    /// Placement group of the project to place it by (see `kumo placement-group list`)
    #[arg(long)]
    pub placement_group: Option<String>,
    #[command(flatten)]
    pub wait: WaitArgs,
}

/// An instance of a project.
#[derive(Debug, Args)]
pub struct InstanceRef {
    /// Instance name or id
    pub instance: String,
    #[command(flatten)]
    pub project: ProjectArg,
}

#[derive(Debug, Args)]
pub struct InstanceActionArgs {
    /// Instance name or id
    pub instance: String,
    #[command(flatten)]
    pub project: ProjectArg,
    #[command(flatten)]
    pub wait: WaitArgs,
}

#[derive(Debug, Args)]
pub struct InstanceResizeArgs {
    /// Instance name or id
    pub instance: String,
    /// The new instance type
    #[arg(long = "type", value_name = "TYPE")]
    pub instance_type: String,
    #[command(flatten)]
    pub project: ProjectArg,
}

#[derive(Debug, Args)]
pub struct InstanceMigrateArgs {
    /// Instance name or id
    pub instance: String,
    /// The host to move it to (default: the scheduler's choice among the other ready hosts of its zone)
    #[arg(long)]
    pub host: Option<String>,
    #[command(flatten)]
    pub project: ProjectArg,
    #[command(flatten)]
    pub wait: WaitArgs,
}

pub fn run(ctx: &Ctx, command: &InstanceCommand) -> Result<()> {
    match command {
        InstanceCommand::List { project, list } => {
            let page = ctx.client.list_all(&["instances"], &[("project", &project.project)], list.cap())?;
            ctx.show(&page, render_list)
        }
        InstanceCommand::Create(args) => create(ctx, args),
        InstanceCommand::View(r) => {
            let found = ctx.client.get(&["instances", &r.instance], &[("project", &r.project.project)])?;
            ctx.show(&found, render_view)
        }
        InstanceCommand::Start(a) => action(ctx, a, "start", Target::State(InstanceState::Running)),
        InstanceCommand::Stop(a) => action(ctx, a, "stop", Target::State(InstanceState::Stopped)),
        InstanceCommand::Reboot(a) => action(ctx, a, "reboot", Target::State(InstanceState::Running)),
        InstanceCommand::Delete(a) => {
            let project = a.project.project.as_str();
            let returned = ctx.client.delete(&["instances", &a.instance], &[("project", project)])?;
            finish(ctx, &a.instance, project, Target::Gone, &a.wait, returned)
        }
        InstanceCommand::Resize(r) => {
            let body = InstanceResize { instance_type: r.instance_type.clone() };
            let query = [("project", r.project.project.as_str())];
            let resized = ctx.client.post(&["instances", &r.instance, "resize"], &query, Some(&body))?;
            ctx.show(&resized, render_view)
        }
        InstanceCommand::Migrate(m) => migrate(ctx, m),
        InstanceCommand::Serial(args) => serial::run(ctx, args),
        InstanceCommand::Ssh(args) => crate::ssh::run(ctx, args),
        InstanceCommand::Metrics(args) => crate::metrics::run(ctx, args),
    }
}

fn create(ctx: &Ctx, args: &InstanceCreateArgs) -> Result<()> {
    let user_data = args.user_data_file.as_deref().map(read_user_data).transpose()?;
    let body = InstanceCreate {
        name: args.name.clone(),
        description: args.description.clone(),
        image: args.image.clone(),
        instance_type: args.instance_type.clone(),
        user_data,
        root_size_gib: args.root_size,
        vpc: args.vpc.clone(),
        subnet: args.subnet.clone(),
        security_groups: (!args.security_groups.is_empty()).then(|| args.security_groups.clone()),
        ssh_keys: args.ssh_keys.clone(),
        zone: args.zone.clone(),
        placement_group: args.placement_group.clone(),
    };
    let project = args.project.project.as_str();
    let created = ctx.client.post(&["instances"], &[("project", project)], Some(&body))?;
    finish(ctx, args.name.as_str(), project, Target::State(InstanceState::Running), &args.wait, created)
}

fn read_user_data(path: &Path) -> Result<String> {
    let data = std::fs::read(path).with_context(|| format!("reading user data file {}", path.display()))?;
    if data.len() > USER_DATA_MAX_BYTES {
        bail!(
            "user data file {} is {} bytes; at most {} bytes are allowed",
            path.display(),
            data.len(),
            USER_DATA_MAX_BYTES
        );
    }
    String::from_utf8(data).map_err(|_| anyhow::anyhow!("user data file {} is not UTF-8 text", path.display()))
}

/// Moves an instance; with `--wait`, until it is back in the state it was in, on another host
/// (a move that was rolled back is an error, with its reason).
fn migrate(ctx: &Ctx, m: &InstanceMigrateArgs) -> Result<()> {
    let project = m.project.project.as_str();
    let query = [("project", project)];
    let before: InstanceView = crate::output::view(&ctx.client.get(&["instances", &m.instance], &query)?.to_value())?;
    let body = InstanceMigrate { host: m.host.clone() };
    let returned = ctx.client.post(&["instances", &m.instance, "migrate"], &query, Some(&body))?;
    let Some(after) = maybe_wait(&ctx.client, project, &m.instance, Target::State(before.state), &m.wait, returned)?
    else {
        bail!("instance {} disappeared while it was being moved", m.instance);
    };
    if m.wait.wait {
        let view: InstanceView = crate::output::view(&after.to_value())?;
        if view.host == before.host {
            bail!(
                "instance {} was not moved: {}",
                m.instance,
                view.state_reason.as_deref().unwrap_or("it is still on its host")
            );
        }
    }
    ctx.show(&after, render_view)
}

/// start, stop, reboot: POST the action, then wait if asked.
fn action(ctx: &Ctx, args: &InstanceActionArgs, verb: &str, target: Target) -> Result<()> {
    let project = args.project.project.as_str();
    let returned = ctx.client.post(&["instances", &args.instance, verb], &[("project", project)], None::<&()>)?;
    finish(ctx, &args.instance, project, target, &args.wait, returned)
}

/// Waits if `--wait` was given, then prints the (final) view, or `deleted instance NAME`.
fn finish(ctx: &Ctx, name: &str, project: &str, target: Target, wait: &WaitArgs, returned: Json) -> Result<()> {
    match maybe_wait(&ctx.client, project, name, target, wait, returned)? {
        Some(view) if !view.is_null() => ctx.show(&view, render_view),
        _ => {
            ctx.done(&format!("deleted instance {name}"));
            Ok(())
        }
    }
}

fn render_list(page: &Value) -> Result<String> {
    let now = Utc::now();
    let mut table = list_table(&["NAME", "STATE", "TYPE", "IMAGE", "HOST", "AGE"]);
    for i in output::items::<InstanceView>(page)? {
        table.add_row(vec![
            i.name,
            i.state.to_string(),
            i.instance_type,
            i.image,
            or_dash(i.host.as_deref()),
            age(i.time_created, now),
        ]);
    }
    Ok(output::render(&table))
}

pub fn render_view(value: &Value) -> Result<String> {
    let i: InstanceView = output::view(value)?;
    let now = Utc::now();
    let mut rows = vec![
        ("NAME", i.name),
        ("ID", i.id.to_string()),
        ("PROJECT", i.project),
        ("DESCRIPTION", or_dash(Some(&i.description))),
        ("STATE", i.state.to_string()),
    ];
    if let Some(reason) = i.state_reason.filter(|r| !r.is_empty()) {
        rows.push(("REASON", reason));
    }
    rows.extend([
        ("TYPE", i.instance_type),
        ("SIZE", format!("{} vCPU, {} MiB memory, {} GiB disk", i.vcpus, i.memory_mib, i.disk_gib)),
        ("IMAGE", i.image),
        ("HOST", or_dash(i.host.as_deref())),
    ]);
    if let Some(g) = i.placement_group {
        rows.push(("PLACEMENT GROUP", g));
    }
    for nic in &i.network_interfaces {
        rows.push(("NETWORK", format!("{} in {}/{} (mac {})", nic.ipv4, nic.vpc, nic.subnet, nic.mac)));
    }
    rows.extend([
        ("PUBLIC IP", or_dash(i.public_ip.as_deref())),
        ("CREATED", time_with_age(i.time_created, now)),
        ("MODIFIED", time_with_age(i.time_modified, now)),
    ]);
    Ok(output::render(&view_table(rows)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sample(state: &str, reason: Option<&str>, host: Option<&str>) -> Value {
        json!({
            "id": "0190b2a4-0000-7000-8000-000000000004", "name": "web1", "description": "",
            "time_created": "2024-05-01T10:00:00Z", "time_modified": "2024-05-01T10:05:00Z",
            "project": "demo", "state": state, "state_reason": reason, "image": "tiny",
            "instance_type": "small", "vcpus": 1, "memory_mib": 512, "disk_gib": 10, "host": host
        })
    }

    #[test]
    fn list_has_the_columns_that_matter() {
        let page = json!({"items": [sample("running", None, Some("host-a")), sample("stopped", None, None)]});
        let text = render_list(&page).expect("render");
        let lines: Vec<&str> = text.lines().collect();
        let header: Vec<&str> = lines[0].split_whitespace().collect();
        assert_eq!(header, ["NAME", "STATE", "TYPE", "IMAGE", "HOST", "AGE"]);
        let row: Vec<&str> = lines[1].split_whitespace().collect();
        assert_eq!(&row[..5], ["web1", "running", "small", "tiny", "host-a"]);
        // Tenants see no host: a dash keeps the columns aligned.
        assert_eq!(lines[2].split_whitespace().nth(4), Some("-"));
    }

    #[test]
    fn view_shows_the_reason_of_a_failure() {
        let text = render_view(&sample("failed", Some("qemu exited"), None)).expect("render");
        assert!(text.lines().any(|l| l.starts_with("REASON") && l.ends_with("qemu exited")), "{text}");
        assert!(text.contains("1 vCPU, 512 MiB memory, 10 GiB disk"), "{text}");
        let running = render_view(&sample("running", None, None)).expect("render");
        assert!(!running.contains("REASON"));
    }

    #[test]
    fn view_shows_the_network_interfaces_and_the_public_ip() {
        let mut v = sample("running", None, None);
        v["network_interfaces"] =
            json!([{"mac": "02:00:00:00:00:01", "ipv4": "10.10.1.2", "vpc": "app", "subnet": "web"}]);
        v["public_ip"] = json!("192.0.2.2");
        let text = render_view(&v).expect("render");
        assert!(text.lines().any(|l| l.starts_with("NETWORK") && l.contains("10.10.1.2 in app/web")), "{text}");
        assert!(text.lines().any(|l| l.starts_with("PUBLIC IP") && l.ends_with("192.0.2.2")), "{text}");
        let none = render_view(&sample("running", None, None)).expect("render");
        assert!(!none.contains("NETWORK") && none.lines().any(|l| l.starts_with("PUBLIC IP") && l.ends_with('-')));
    }

    #[test]
    fn user_data_is_checked_before_sending() {
        let dir = std::env::temp_dir().join(format!("kumo-cli-ud-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("dir");
        let ok = dir.join("ok.sh");
        std::fs::write(&ok, "#!/bin/sh\necho hi\n").expect("write");
        assert_eq!(read_user_data(&ok).expect("read"), "#!/bin/sh\necho hi\n");
        let big = dir.join("big.sh");
        std::fs::write(&big, vec![b'x'; USER_DATA_MAX_BYTES + 1]).expect("write");
        assert!(read_user_data(&big).expect_err("too big").to_string().contains("at most"));
        assert!(read_user_data(&dir.join("missing")).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
