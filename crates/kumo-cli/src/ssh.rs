//! `kumo instance ssh`: runs `ssh` to an instance's floating IP as its image's default user
//! (`os_facts.default_user`), inside a network namespace when the cloud keeps its public
//! addresses in one (`scripts/up.sh` uses `kumo`: `--netns kumo` or `KUMO_NETNS=kumo`).

use crate::cli::ProjectArg;
use crate::Ctx;
use anyhow::{bail, Context, Result};
use clap::Args;
use kumo_types::{ImageView, InstanceView};
use std::path::PathBuf;

#[derive(Debug, Args)]
pub struct SshArgs {
    /// Instance name or id
    pub instance: String,
    #[command(flatten)]
    pub project: ProjectArg,
    /// Log in as this user (default: the default user of the instance's image)
    #[arg(short = 'l', long = "user", value_name = "USER")]
    pub user: Option<String>,
    /// Private key file (ssh's -i)
    #[arg(short = 'i', long = "identity", value_name = "FILE")]
    pub identity: Option<PathBuf>,
    /// Run ssh inside this network namespace (`ip netns exec NS ssh …`); scripts/up.sh keeps
    /// floating IPs in the namespace `kumo`
    #[arg(long, env = "KUMO_NETNS", value_name = "NS")]
    pub netns: Option<String>,
    /// Print the command instead of running it
    #[arg(long)]
    pub print: bool,
    /// More arguments for ssh, after `--` (options, or a command to run in the guest)
    #[arg(last = true, value_name = "SSH_ARGS")]
    pub ssh_args: Vec<String>,
}

pub fn run(ctx: &Ctx, args: &SshArgs) -> Result<()> {
    let project = args.project.project.as_str();
    let inst: InstanceView = ctx.client.get(&["instances", &args.instance], &[("project", project)])?.decode()?;
    let Some(ip) = inst.public_ip.clone() else {
        bail!(
            "instance '{}' has no floating IP; attach one first: kumo floating-ip create ip1 --project {project} && \
             kumo floating-ip attach ip1 --instance {} --project {project}",
            inst.name,
            inst.name
        );
    };
    let user = match &args.user {
        Some(u) => u.clone(),
        None => {
            let image: ImageView = ctx.client.get(&["images", &inst.image], &[("project", project)])?.decode()?;
            match image.os_facts.default_user {
                Some(u) => u,
                None => bail!("image '{}' names no default user; give one with -l USER", image.name),
            }
        }
    };
    let argv = ssh_command(args.netns.as_deref(), &user, &ip, args.identity.as_ref(), &args.ssh_args);
    if args.print {
        println!("{}", argv.join(" "));
        return Ok(());
    }
    use std::os::unix::process::CommandExt;
    let err = std::process::Command::new(&argv[0]).args(&argv[1..]).exec();
    Err(err).with_context(|| format!("could not run {} (openssh-client and iproute2 provide ssh and ip)", argv[0]))
}

/// The command line: `[ip netns exec NS] ssh -o StrictHostKeyChecking=accept-new [-i KEY] -l
/// USER IP [ARGS…]`. A new guest's host key is accepted the first time and checked afterwards.
pub fn ssh_command(
    netns: Option<&str>,
    user: &str,
    ip: &str,
    identity: Option<&PathBuf>,
    extra: &[String],
) -> Vec<String> {
    let mut a: Vec<String> = Vec::new();
    if let Some(ns) = netns {
        a.extend(["ip", "netns", "exec", ns].map(String::from));
    }
    a.extend(["ssh", "-o", "StrictHostKeyChecking=accept-new"].map(String::from));
    if let Some(key) = identity {
        a.push("-i".into());
        a.push(key.display().to_string());
    }
    a.extend(["-l".to_string(), user.to_string(), ip.to_string()]);
    a.extend(extra.iter().cloned());
    a
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::Client;
    use crate::output::OutputFormat;
    use crate::testserver::{Reply, TestServer};
    use serde_json::json;

    #[test]
    fn the_command_line_runs_ssh_in_the_namespace_as_the_user() {
        let key = PathBuf::from("/root/.ssh/id_ed25519");
        assert_eq!(
            ssh_command(Some("kumo"), "debian", "192.0.2.7", Some(&key), &["hostname".into()]).join(" "),
            "ip netns exec kumo ssh -o StrictHostKeyChecking=accept-new -i /root/.ssh/id_ed25519 -l debian 192.0.2.7 hostname"
        );
        assert_eq!(
            ssh_command(None, "root", "203.0.113.9", None, &[]).join(" "),
            "ssh -o StrictHostKeyChecking=accept-new -l root 203.0.113.9"
        );
    }

    fn instance(public_ip: Option<&str>) -> serde_json::Value {
        json!({"id": "0190b2a4-0000-7000-8000-000000000001", "name": "web1", "description": "",
            "time_created": "2024-05-01T10:00:00Z", "time_modified": "2024-05-01T10:00:00Z",
            "project": "demo", "image": "debian-12", "instance_type": "k1-small", "state": "running",
            "vcpus": 1, "memory_mib": 512, "disk_gib": 5, "host": null, "public_ip": public_ip})
    }

    fn args(print: bool, user: Option<&str>) -> SshArgs {
        SshArgs {
            instance: "web1".into(),
            project: ProjectArg { project: "demo".into() },
            user: user.map(String::from),
            identity: None,
            netns: Some("kumo".into()),
            print,
            ssh_args: vec![],
        }
    }

    #[test]
    fn an_instance_without_a_floating_ip_is_told_to_attach_one() {
        let server = TestServer::start(|_| Reply::json(200, &instance(None).to_string()));
        let ctx = Ctx { client: Client::new(&server.url(), "t").expect("client"), output: OutputFormat::Table };
        let err = run(&ctx, &args(true, None)).expect_err("no floating IP").to_string();
        assert!(err.contains("no floating IP") && err.contains("kumo floating-ip attach ip1 --instance web1"), "{err}");
    }

    #[test]
    fn the_user_comes_from_the_image_or_must_be_given() {
        let server = TestServer::start(|req| {
            if req.path.starts_with("/v1/images/") {
                Reply::json(
                    200,
                    &json!({"id": "0190b2a4-0000-7000-8000-000000000002", "name": "debian-12", "description": "",
                        "time_created": "2024-05-01T10:00:00Z", "time_modified": "2024-05-01T10:00:00Z",
                        "project": null, "os": "Debian 12", "boot": "disk", "size_bytes": 2147483648_i64,
                        "os_facts": {"os_family": "debian", "os_version": "12", "default_user": null,
                            "min_memory_mib": 512, "min_disk_gib": 2}})
                    .to_string(),
                )
            } else {
                Reply::json(200, &instance(Some("192.0.2.7")).to_string())
            }
        });
        let ctx = Ctx { client: Client::new(&server.url(), "t").expect("client"), output: OutputFormat::Table };
        let err = run(&ctx, &args(true, None)).expect_err("no default user").to_string();
        assert!(err.contains("names no default user") && err.contains("-l USER"), "{err}");
        assert!(server.requests().iter().any(|r| r.path == "/v1/images/debian-12"), "the image was not asked for");
        run(&ctx, &args(true, Some("debian"))).expect("with -l");
    }
}
