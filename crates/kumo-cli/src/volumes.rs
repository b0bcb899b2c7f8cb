//! `kumo volume …`: block storage volumes. Attach, detach and delete answer 202 with the
//! transitional state; `--wait` polls the volume until it has settled (like instances' `--wait`).

use crate::cli::{parse_name, ListArgs, ProjectArg};
use crate::json::Json;
use crate::output::{self, age, list_table, or_dash, time_with_age, view_table};
use crate::wait::WaitArgs;
use crate::Ctx;
use anyhow::{anyhow, Result};
use chrono::Utc;
use clap::{Args, Subcommand};
use kumo_types::{Name, VolumeAttach, VolumeCreate, VolumeIoLimits, VolumeResize, VolumeState, VolumeView};
use serde_json::Value;
use std::time::{Duration, Instant};

#[derive(Debug, Subcommand)]
pub enum VolumeCommand {
    /// List a project's volumes
    List {
        #[command(flatten)]
        project: ProjectArg,
        #[command(flatten)]
        list: ListArgs,
    },
    /// Create a volume: empty, or a copy-on-write clone of an image
    Create(VolumeCreateArgs),
    /// Show one volume
    View(VolumeRef),
    /// Attach a volume to an instance (hot-plugged into a running guest)
    Attach(VolumeAttachArgs),
    /// Detach a volume from its instance
    Detach(VolumeActionArgs),
    /// Grow a volume (online when attached to a running instance)
    Resize(VolumeResizeArgs),
    /// Delete a detached volume and its data
    Delete(VolumeActionArgs),
    /// Change a volume's I/O limits (live when attached to a running instance)
    SetLimits(VolumeLimitsArgs),
}

#[derive(Debug, Args)]
pub struct VolumeLimitsArgs {
    /// Volume name or id
    pub volume: String,
    /// Most read + write requests per second (omit: unlimited)
    #[arg(long, value_name = "N")]
    pub iops: Option<i64>,
    /// Most read + write MiB per second (omit: unlimited)
    #[arg(long, value_name = "MIB_S")]
    pub bandwidth: Option<i64>,
    #[command(flatten)]
    pub project: ProjectArg,
}

#[derive(Debug, Args)]
pub struct VolumeCreateArgs {
    /// Name of the new volume
    #[arg(value_parser = parse_name)]
    pub name: Name,
    #[command(flatten)]
    pub project: ProjectArg,
    /// Size in GiB
    #[arg(long, value_name = "GIB")]
    pub size: i64,
    /// Make it a copy-on-write clone of this image (name or id)
    #[arg(long, value_name = "IMAGE", conflicts_with_all = ["from_snapshot", "from_backup"])]
    pub from_image: Option<String>,
    /// Make it from this snapshot (name or id)
    #[arg(long, value_name = "SNAPSHOT", conflicts_with = "from_backup")]
    pub from_snapshot: Option<String>,
    /// Restore it from this backup (name or id)
    #[arg(long, value_name = "BACKUP")]
    pub from_backup: Option<String>,
    /// Encrypt its data at rest
    #[arg(long)]
    pub encrypted: bool,
    /// Most read + write requests per second (default: unlimited)
    #[arg(long, value_name = "N")]
    pub iops: Option<i64>,
    /// Most read + write MiB per second (default: unlimited)
    #[arg(long, value_name = "MIB_S")]
    pub bandwidth: Option<i64>,
    /// Free-form description
    #[arg(long, default_value = "")]
    pub description: String,
    #[command(flatten)]
    pub wait: WaitArgs,
}

/// A volume of a project.
#[derive(Debug, Args)]
pub struct VolumeRef {
    /// Volume name or id
    pub volume: String,
    #[command(flatten)]
    pub project: ProjectArg,
}

#[derive(Debug, Args)]
pub struct VolumeActionArgs {
    /// Volume name or id
    pub volume: String,
    #[command(flatten)]
    pub project: ProjectArg,
    #[command(flatten)]
    pub wait: WaitArgs,
}

#[derive(Debug, Args)]
pub struct VolumeAttachArgs {
    /// Volume name or id
    pub volume: String,
    /// The instance to attach it to (name or id)
    #[arg(long)]
    pub instance: String,
    #[command(flatten)]
    pub project: ProjectArg,
    #[command(flatten)]
    pub wait: WaitArgs,
}

#[derive(Debug, Args)]
pub struct VolumeResizeArgs {
    /// Volume name or id
    pub volume: String,
    /// The new size in GiB (volumes only grow)
    #[arg(long, value_name = "GIB")]
    pub size: i64,
    #[command(flatten)]
    pub project: ProjectArg,
}

pub fn run(ctx: &Ctx, command: &VolumeCommand) -> Result<()> {
    match command {
        VolumeCommand::List { project, list } => {
            let page = ctx.client.list_all(&["volumes"], &[("project", &project.project)], list.cap())?;
            ctx.show(&page, render_list)
        }
        VolumeCommand::Create(a) => {
            let body = VolumeCreate {
                name: a.name.clone(),
                description: a.description.clone(),
                size_gib: a.size,
                encrypted: a.encrypted,
                source_image: a.from_image.clone(),
                source_snapshot: a.from_snapshot.clone(),
                source_backup: a.from_backup.clone(),
                iops_limit: a.iops,
                bandwidth_limit_mib_s: a.bandwidth,
            };
            let project = a.project.project.as_str();
            let created = ctx.client.post(&["volumes"], &[("project", project)], Some(&body))?;
            finish(ctx, a.name.as_str(), project, Some(VolumeState::Available), &a.wait, created)
        }
        VolumeCommand::View(r) => {
            let found = ctx.client.get(&["volumes", &r.volume], &[("project", &r.project.project)])?;
            ctx.show(&found, render_view)
        }
        VolumeCommand::Attach(a) => {
            let project = a.project.project.as_str();
            let body = VolumeAttach { instance: a.instance.clone() };
            let returned = ctx.client.post(&["volumes", &a.volume, "attach"], &[("project", project)], Some(&body))?;
            finish(ctx, &a.volume, project, Some(VolumeState::Attached), &a.wait, returned)
        }
        VolumeCommand::Detach(a) => {
            let project = a.project.project.as_str();
            let returned = ctx.client.post(&["volumes", &a.volume, "detach"], &[("project", project)], None::<&()>)?;
            finish(ctx, &a.volume, project, Some(VolumeState::Available), &a.wait, returned)
        }
        VolumeCommand::Resize(r) => {
            let body = VolumeResize { size_gib: r.size };
            let query = [("project", r.project.project.as_str())];
            let resized = ctx.client.post(&["volumes", &r.volume, "resize"], &query, Some(&body))?;
            ctx.show(&resized, render_view)
        }
        VolumeCommand::SetLimits(a) => {
            let body = VolumeIoLimits { iops_limit: a.iops, bandwidth_limit_mib_s: a.bandwidth };
            let query = [("project", a.project.project.as_str())];
            let changed = ctx.client.put(&["volumes", &a.volume, "io-limits"], &query, &body)?;
            ctx.show(&changed, render_view)
        }
        VolumeCommand::Delete(a) => {
            let project = a.project.project.as_str();
            let returned = ctx.client.delete(&["volumes", &a.volume], &[("project", project)])?;
            finish(ctx, &a.volume, project, None, &a.wait, returned)
        }
    }
}

/// Waits if `--wait` was given (`target` None: until the volume is gone), then prints the view.
fn finish(
    ctx: &Ctx,
    name: &str,
    project: &str,
    target: Option<VolumeState>,
    wait: &WaitArgs,
    returned: Json,
) -> Result<()> {
    let last = if wait.wait {
        wait_for(ctx, name, project, target, Duration::from_secs(wait.timeout), returned)?
    } else {
        Some(returned)
    };
    match last {
        Some(v) => ctx.show(&v, render_view),
        None => {
            ctx.done(&format!("deleted volume {name}"));
            Ok(())
        }
    }
}

/// What one observed state means for a wait for `target`.
fn assess(name: &str, target: Option<VolumeState>, v: &VolumeView) -> Option<Result<()>> {
    if Some(v.state) == target {
        return Some(Ok(()));
    }
    if v.state.is_transitional() {
        return None;
    }
    let because = v.state_reason.as_deref().map(|r| format!(": {r}")).unwrap_or_default();
    let wanted = target.map(|t| t.as_str()).unwrap_or("deleted");
    Some(Err(anyhow!("volume {name} settled in state {} instead of {wanted}{because}", v.state)))
}

fn wait_for(
    ctx: &Ctx,
    name: &str,
    project: &str,
    target: Option<VolumeState>,
    timeout: Duration,
    initial: Json,
) -> Result<Option<Json>> {
    let spinner = crate::wait::spinner();
    let deadline = Instant::now() + timeout;
    let mut current = initial;
    let outcome = loop {
        let v: VolumeView = output::view(&current.to_value())?;
        spinner.set_message(format!("volume {name}: {}", v.state));
        // The answer to the request itself shows the transitional state; a resting one there
        // means the action was already done.
        if let Some(done) = assess(name, target, &v) {
            break done.map(|_| Some(current));
        }
        if Instant::now() >= deadline {
            break Err(anyhow!("timed out after {}s waiting for volume {name} (it is {})", timeout.as_secs(), v.state));
        }
        std::thread::sleep(Duration::from_millis(250));
        match ctx.client.get(&["volumes", name], &[("project", project)]) {
            Ok(next) => current = next,
            Err(e) if e.is_not_found() && target.is_none() => break Ok(None),
            Err(e) => break Err(e.into()),
        }
    };
    spinner.finish_and_clear();
    outcome
}

fn limits(iops: Option<i64>, mib_s: Option<i64>) -> String {
    match (iops, mib_s) {
        (None, None) => "unlimited".into(),
        (i, b) => format!(
            "{} IOPS, {} MiB/s",
            i.map_or("any".into(), |i| i.to_string()),
            b.map_or("any".into(), |b| b.to_string())
        ),
    }
}

fn render_list(page: &Value) -> Result<String> {
    let now = Utc::now();
    let mut table = list_table(&["NAME", "STATE", "SIZE", "ATTACHED TO", "SOURCE", "AGE"]);
    for v in output::items::<VolumeView>(page)? {
        table.add_row(vec![
            v.name,
            v.state.to_string(),
            format!("{} GiB", v.size_gib),
            or_dash(v.attached_to.as_deref()),
            v.source,
            age(v.time_created, now),
        ]);
    }
    Ok(output::render(&table))
}

pub fn render_view(value: &Value) -> Result<String> {
    let v: VolumeView = output::view(value)?;
    let now = Utc::now();
    let mut rows = vec![
        ("NAME", v.name),
        ("ID", v.id.to_string()),
        ("PROJECT", v.project),
        ("DESCRIPTION", or_dash(Some(&v.description))),
        ("STATE", v.state.to_string()),
    ];
    if let Some(reason) = v.state_reason.filter(|r| !r.is_empty()) {
        rows.push(("REASON", reason));
    }
    rows.extend([
        ("SIZE", format!("{} GiB", v.size_gib)),
        ("ATTACHED TO", or_dash(v.attached_to.as_deref())),
        ("ENCRYPTED", if v.encrypted { "yes" } else { "no" }.to_string()),
        ("IO LIMITS", limits(v.iops_limit, v.bandwidth_limit_mib_s)),
        ("SOURCE", v.source),
        ("CREATED", time_with_age(v.time_created, now)),
        ("MODIFIED", time_with_age(v.time_modified, now)),
    ]);
    Ok(output::render(&view_table(rows)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sample(state: &str, attached: Option<&str>, reason: Option<&str>) -> Value {
        json!({
            "id": "0190b2a4-0000-7000-8000-000000000009", "name": "data", "description": "",
            "time_created": "2024-05-01T10:00:00Z", "time_modified": "2024-05-01T10:05:00Z",
            "project": "demo", "size_gib": 10, "state": state, "state_reason": reason,
            "attached_to": attached, "encrypted": false, "source": "image:tiny",
            "iops_limit": 500, "bandwidth_limit_mib_s": null
        })
    }

    #[test]
    fn list_and_view_show_what_matters() {
        let text = render_list(&json!({"items": [sample("attached", Some("web1"), None)]})).expect("render");
        let row: Vec<&str> = text.lines().nth(1).expect("row").split_whitespace().collect();
        assert_eq!(&row[..6], ["data", "attached", "10", "GiB", "web1", "image:tiny"]);
        let view = render_view(&sample("available", None, Some("hot-plug failed: x"))).expect("render");
        assert!(view.lines().any(|l| l.starts_with("REASON") && l.ends_with("hot-plug failed: x")), "{view}");
        assert!(view.contains("500 IOPS, any MiB/s"), "{view}");
    }

    #[test]
    fn waiting_stops_at_the_target_or_a_wrong_resting_state() {
        let v = |s: &str, r: Option<&str>| -> VolumeView { output::view(&sample(s, None, r)).expect("view") };
        assert!(assess("data", Some(VolumeState::Attached), &v("attaching", None)).is_none());
        assert!(matches!(assess("data", Some(VolumeState::Attached), &v("attached", None)), Some(Ok(()))));
        let err = assess("data", Some(VolumeState::Attached), &v("available", Some("hot-plug failed")))
            .expect("settled")
            .expect_err("wrong state");
        assert!(err.to_string().contains("hot-plug failed"), "{err}");
    }
}
