//! `kumo host …`: the machines instances run on, how much of each is reserved, cordoning, and
//! the join tokens agent hosts join with (operators).

use crate::cli::ListArgs;
use crate::output::{self, age, list_table, or_dash, time_with_age, timestamp, view_table};
use crate::Ctx;
use anyhow::Result;
use chrono::{DateTime, Utc};
use clap::Subcommand;
use kumo_types::{
    labels_text, DrainState, DrainView, HostLabelsSet, HostRole, HostView, JoinTokenCreate, JoinTokenCreated, Labels,
};
use serde_json::Value;

#[derive(Debug, Subcommand)]
pub enum HostCommand {
    /// List hosts with their zone, state and used/limit capacity
    List(ListArgs),
    /// Show one host
    View {
        /// Host name or id
        host: String,
    },
    /// Cordon a host: no new instance is placed on it (its instances keep running)
    Cordon {
        /// Host name or id
        host: String,
    },
    /// Uncordon a host: the scheduler may place instances on it again
    Uncordon {
        /// Host name or id
        host: String,
    },
    /// Remove an agent host from the cloud (refused while anything is placed on it); its agent's
    /// credential stops working
    Delete {
        /// Host name or id
        host: String,
    },
    /// Set or remove a host's labels: `disk=ssd` sets, `disk-` removes (instance types with
    /// `--host-label` are placed only on hosts that have them)
    Label {
        /// Host name or id
        host: String,
        /// KEY=VALUE to set, KEY- to remove
        #[arg(required = true, value_name = "KEY=VALUE|KEY-")]
        changes: Vec<String>,
    },
    /// Drain a host: cordon it and move every instance off it, one at a time (cold migration:
    /// stop, copy the root disk, start on another host of its zone)
    Drain {
        /// Host name or id
        host: String,
        /// Wait until the drain ends, printing a line at every step
        #[arg(long)]
        wait: bool,
        /// With --wait: give up after this many seconds
        #[arg(long, value_name = "SECS", default_value_t = 1800, requires = "wait")]
        timeout: u64,
    },
    /// One-time tokens a `kumod agent` joins the cluster with
    #[command(subcommand)]
    JoinToken(JoinTokenCommand),
}

#[derive(Debug, Subcommand)]
pub enum JoinTokenCommand {
    /// Create a join token for one host of a zone and print it (shown only this once)
    Create {
        /// The zone the joining host is put in (see `kumo zone list`)
        #[arg(long)]
        zone: String,
        /// How long the token may be used: seconds (90 or 90s), minutes (30m), hours (1h) or
        /// days (7d); 1 minute to 7 days, default 1h
        #[arg(long, value_name = "DURATION", value_parser = parse_lifetime)]
        expires: Option<u64>,
    },
}

/// `90`, `90s`, `30m`, `1h`, `7d` → seconds (bounds are the server's).
pub fn parse_lifetime(s: &str) -> Result<u64, String> {
    let bad = || format!("'{s}' is not a lifetime like 90s, 30m, 1h or 7d");
    let (n, per) = match s.char_indices().last() {
        Some((i, 's')) => (&s[..i], 1),
        Some((i, 'm')) => (&s[..i], 60),
        Some((i, 'h')) => (&s[..i], 3600),
        Some((i, 'd')) => (&s[..i], 86_400),
        _ => (s, 1),
    };
    let n: u64 = n.parse().map_err(|_| bad())?;
    n.checked_mul(per).ok_or_else(bad)
}

/// `KEY=VALUE` → (key, value) (the rules are the server's).
pub fn parse_label(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("'{s}' is not a label KEY=VALUE")),
    }
}

/// The labels after `changes` (`KEY=VALUE` sets, `KEY-` removes) to `labels`.
fn relabel(mut labels: Labels, changes: &[String]) -> Result<Labels, String> {
    for c in changes {
        if let Some(key) = c.strip_suffix('-').filter(|k| !k.contains('=')) {
            labels.remove(key);
        } else {
            let (k, v) = parse_label(c).map_err(|e| format!("{e} (or KEY- to remove one)"))?;
            labels.insert(k, v);
        }
    }
    Ok(labels)
}

pub fn run(ctx: &Ctx, command: &HostCommand) -> Result<()> {
    match command {
        HostCommand::List(list) => {
            let page = ctx.client.list_all(&["hosts"], &[], list.cap())?;
            ctx.show(&page, render_list)
        }
        HostCommand::View { host } => {
            let found = ctx.client.get(&["hosts", host], &[])?;
            ctx.show(&found, render_view)
        }
        HostCommand::Cordon { host } => {
            let h = ctx.client.post(&["hosts", host, "cordon"], &[], None::<&()>)?;
            ctx.show(&h, render_view)
        }
        HostCommand::Uncordon { host } => {
            let h = ctx.client.post(&["hosts", host, "uncordon"], &[], None::<&()>)?;
            ctx.show(&h, render_view)
        }
        HostCommand::Delete { host } => {
            ctx.client.delete(&["hosts", host], &[])?;
            ctx.done(&format!("removed host {host}"));
            Ok(())
        }
        HostCommand::Label { host, changes } => {
            let current: HostView = ctx.client.get(&["hosts", host], &[])?.decode()?;
            let labels = relabel(current.labels, changes).map_err(anyhow::Error::msg)?;
            let h = ctx.client.put(&["hosts", host, "labels"], &[], &HostLabelsSet { labels })?;
            ctx.show(&h, render_view)
        }
        HostCommand::Drain { host, wait, timeout } => {
            let h = ctx.client.post(&["hosts", host, "drain"], &[], None::<&()>)?;
            if !*wait {
                return ctx.show(&h, render_view);
            }
            let last = wait_drain(ctx, host, h, std::time::Duration::from_secs(*timeout))?;
            ctx.show(&last, render_view)
        }
        HostCommand::JoinToken(JoinTokenCommand::Create { zone, expires }) => {
            let body = JoinTokenCreate { zone: zone.clone(), expires_in_seconds: *expires };
            let created = ctx.client.post(&["join-tokens"], &[], Some(&body))?;
            ctx.show(&created, render_join_token)
        }
    }
}

/// One line of a drain's progress.
pub fn drain_line(name: &str, d: &DrainView) -> String {
    let mut line = format!("host {name}: drain {}: {} moved, {} remaining", d.state.as_str(), d.moved, d.remaining);
    if d.failed > 0 {
        line.push_str(&format!(", {} failed", d.failed));
    }
    if let Some(m) = &d.moving {
        line.push_str(&format!(", moving {m}"));
    }
    line
}

/// Polls the host every second until its drain ends, printing a progress line (stderr) whenever
/// it changes; an `incomplete` drain is an error with its reason.
fn wait_drain(
    ctx: &Ctx,
    host: &str,
    mut current: crate::json::Json,
    timeout: std::time::Duration,
) -> Result<crate::json::Json> {
    let deadline = std::time::Instant::now() + timeout;
    let mut printed = String::new();
    loop {
        let h: HostView = output::view(&current.to_value())?;
        let Some(d) = &h.drain else { anyhow::bail!("host {} is not being drained (uncordoned meanwhile?)", h.name) };
        let line = drain_line(&h.name, d);
        if line != printed {
            eprintln!("{line}");
            printed = line;
        }
        match d.state {
            DrainState::Draining => {}
            DrainState::Done => return Ok(current),
            DrainState::Incomplete => {
                anyhow::bail!(
                    "the drain of host {} is incomplete: {}",
                    h.name,
                    d.reason.as_deref().unwrap_or("no reason given")
                )
            }
        }
        if std::time::Instant::now() >= deadline {
            anyhow::bail!(
                "timed out after {}s waiting for the drain of host {}; it goes on: check with `kumo host view {host}`",
                timeout.as_secs(),
                h.name
            );
        }
        std::thread::sleep(std::time::Duration::from_secs(1));
        current = ctx.client.get(&["hosts", host], &[])?;
    }
}

fn render_join_token(value: &Value) -> Result<String> {
    let t: JoinTokenCreated = output::view(value)?;
    Ok(format!(
        "{}\n\njoin token for one host of zone '{}' (expires: {}). This is the only time it is shown; \
         start the agent with it: kumod agent --join-token <token> …",
        t.token,
        t.zone,
        timestamp(t.time_expires)
    ))
}

/// When an agent host was last heard from; the local host is in process.
fn seen(role: HostRole, last_seen: Option<DateTime<Utc>>, now: DateTime<Utc>) -> String {
    match (role, last_seen) {
        (HostRole::Local, _) => "local".into(),
        (HostRole::Agent, Some(t)) => format!("{} ago", age(t, now)),
        (HostRole::Agent, None) => "never".into(),
    }
}

fn used_of(used: i64, limit: i64) -> String {
    format!("{used}/{limit}")
}

fn render_list(page: &Value) -> Result<String> {
    let now = Utc::now();
    let headers = ["NAME", "ZONE", "STATE", "VCPU", "MEMORY MIB", "DISK GIB", "GPU", "SEEN"];
    let mut table = list_table(&headers);
    for h in output::items::<HostView>(page)? {
        table.add_row(vec![
            h.name,
            or_dash(Some(&h.zone)),
            h.state.as_str().to_string(),
            used_of(h.vcpus_used, h.vcpus_limit),
            used_of(h.memory_mib_used, h.memory_mib_limit),
            used_of(h.disk_gib_used, h.disk_gib_limit),
            used_of(h.gpus_used, h.gpus_total),
            seen(h.role, h.last_seen, now),
        ]);
    }
    Ok(output::render(&table))
}

fn render_view(value: &Value) -> Result<String> {
    let h: HostView = output::view(value)?;
    let now = Utc::now();
    let capacity = |used: i64, limit: i64, total: i64, ratio: f64, unit: &str| {
        format!("{used}/{limit}{unit} used (physical {total}{unit}, overcommit x{ratio})")
    };
    let drain = h.drain.as_ref().map_or_else(
        || "-".to_string(),
        |d| match &d.reason {
            Some(r) => format!("{} ({r})", drain_line(&h.name, d)),
            None => drain_line(&h.name, d),
        },
    );
    let table = view_table(vec![
        ("NAME", h.name),
        ("ID", h.id.to_string()),
        ("DESCRIPTION", or_dash(Some(&h.description))),
        ("ZONE", or_dash(Some(&h.zone))),
        ("STATE", h.state.as_str().to_string()),
        ("ROLE", h.role.as_str().to_string()),
        ("ADDRESS", or_dash(h.address.as_deref())),
        ("DRIVER", h.driver),
        ("ACCELERATOR", format!("{} ({})", h.accelerator, or_dash(Some(&h.accelerator_reason)))),
        ("VCPU", capacity(h.vcpus_used, h.vcpus_limit, h.vcpus_total, h.cpu_overcommit, "")),
        ("MEMORY", capacity(h.memory_mib_used, h.memory_mib_limit, h.memory_mib_total, h.memory_overcommit, " MiB")),
        ("DISK", capacity(h.disk_gib_used, h.disk_gib_limit, h.disk_gib_total, h.disk_overcommit, " GiB")),
        ("GPU", used_of(h.gpus_used, h.gpus_total)),
        ("LABELS", or_dash(Some(&labels_text(&h.labels)))),
        ("REGISTERED", time_with_age(h.time_created, now)),
        ("LAST REPORT", time_with_age(h.time_modified, now)),
        ("LAST SEEN", h.last_seen.map_or_else(|| seen(h.role, None, now), |t| time_with_age(t, now))),
        ("DRAIN", drain),
    ]);
    Ok(output::render(&table))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sample() -> Value {
        json!({
            "id": "0190b2a4-0000-7000-8000-000000000006", "name": "host-a", "description": "",
            "time_created": "2024-05-01T10:00:00Z", "time_modified": "2024-05-01T10:00:00Z",
            "driver": "qemu", "accelerator": "tcg", "accelerator_reason": "KVM probe boot timed out",
            "vcpus_total": 2, "vcpus_used": 3, "vcpus_limit": 8,
            "memory_mib_total": 4096, "memory_mib_used": 1024, "memory_mib_limit": 6144,
            "disk_gib_total": 100, "disk_gib_used": 20, "disk_gib_limit": 100,
            "gpus_total": 0, "gpus_used": 0,
            "cpu_overcommit": 4.0, "memory_overcommit": 1.5, "disk_overcommit": 1.0,
            "zone": "default", "state": "cordoned", "role": "agent", "cordoned": true,
            "last_seen": "2024-05-01T10:00:00Z", "address": "https://10.77.0.2:7401"
        })
    }

    #[test]
    fn capacity_is_shown_as_used_over_limit() {
        let text = render_list(&json!({"items": [sample()]})).expect("render");
        let lines: Vec<&str> = text.lines().collect();
        let header: Vec<&str> = lines[0].split_whitespace().collect();
        assert_eq!(&header[..4], ["NAME", "ZONE", "STATE", "VCPU"]);
        let row: Vec<&str> = lines[1].split_whitespace().collect();
        assert_eq!(&row[..7], ["host-a", "default", "cordoned", "3/8", "1024/6144", "20/100", "0/0"]);
        assert!(lines[1].ends_with("ago"), "{text}");
        let view = render_view(&sample()).expect("view");
        assert!(view.contains("1024/6144 MiB used (physical 4096 MiB, overcommit x1.5)"), "{view}");
        assert!(view.contains("tcg (KVM probe boot timed out)"), "{view}");
        assert!(view.contains("https://10.77.0.2:7401"), "{view}");
        let mut draining = sample();
        draining["drain"] = json!({"state": "draining", "time_started": "2024-05-01T10:00:00Z", "time_finished": null,
            "moved": 2, "failed": 0, "remaining": 1, "moving": "vm3", "reason": null});
        let view = render_view(&draining).expect("view");
        assert!(view.contains("host host-a: drain draining: 2 moved, 1 remaining, moving vm3"), "{view}");
    }

    #[test]
    fn labels_are_set_with_key_value_and_removed_with_key_dash() {
        let start: Labels = [("disk".to_string(), "hdd".to_string()), ("rack".to_string(), "r1".to_string())].into();
        let changed = relabel(start, &["disk=ssd".into(), "rack-".into(), "gpu=a100".into()]).expect("relabel");
        assert_eq!(labels_text(&changed), "disk=ssd,gpu=a100");
        assert!(relabel(Labels::new(), &["oops".into()]).unwrap_err().contains("KEY- to remove"));
        let mut h = sample();
        h["labels"] = json!({"disk": "ssd"});
        assert!(render_view(&h).expect("view").contains("disk=ssd"));
    }

    #[test]
    fn lifetimes_parse_to_seconds_and_the_join_token_comes_first() {
        assert_eq!(parse_lifetime("90"), Ok(90));
        assert_eq!(parse_lifetime("90s"), Ok(90));
        assert_eq!(parse_lifetime("30m"), Ok(1800));
        assert_eq!(parse_lifetime("1h"), Ok(3600));
        assert_eq!(parse_lifetime("7d"), Ok(604_800));
        for bad in ["", "h", "-1h", "1.5h", "1w", "99999999999999999999d"] {
            assert!(parse_lifetime(bad).is_err(), "{bad}");
        }
        let v = json!({"id": "0190b2a4-0000-7000-8000-000000000007", "token": "kumo_join_abc", "zone": "east",
                       "time_expires": "2024-05-01T11:00:00Z"});
        let text = render_join_token(&v).expect("render");
        assert_eq!(text.lines().next(), Some("kumo_join_abc"));
        assert!(text.contains("zone 'east'"), "{text}");
    }
}
