//! The command line: global options and one subcommand group per resource. Verbs mirror the API's
//! operation ids (`instance_start` → `kumo instance start`). Each group is declared in its
//! resource's module, next to the code that runs it.

use crate::config::LoginArgs;
use crate::events::EventCommand;
use crate::hosts::HostCommand;
use crate::images::ImageCommand;
use crate::instance_types::InstanceTypeCommand;
use crate::instances::InstanceCommand;
use crate::output::OutputFormat;
use crate::projects::ProjectCommand;
use clap::{Args, Parser, Subcommand};
use kumo_types::Name;

#[derive(Debug, Parser)]
#[command(name = "kumo", version, about = "Command-line client of the Kumo cloud", propagate_version = true)]
pub struct Cli {
    /// API server URL [env: KUMO_URL; else the config file of `kumo login`; else http://127.0.0.1:7400]
    #[arg(long, global = true, value_name = "URL", help_heading = "Global options")]
    pub url: Option<String>,

    /// API token [env: KUMO_TOKEN; else the config file of `kumo login`]
    #[arg(long, global = true, value_name = "TOKEN", help_heading = "Global options")]
    pub token: Option<String>,

    /// Trust this PEM certificate for https (e.g. kumod's self-signed DATA_DIR/tls/cert.pem)
    /// besides the system's roots [env: KUMO_CA_CERT; else saved by `kumo login`]
    #[arg(long, global = true, value_name = "FILE", help_heading = "Global options")]
    pub ca_cert: Option<std::path::PathBuf>,

    /// Accept only the server certificate with this SHA-256 fingerprint (DATA_DIR/tls/fingerprint)
    /// [env: KUMO_FINGERPRINT; else saved by `kumo login`]
    #[arg(long, global = true, value_name = "SHA256", help_heading = "Global options")]
    pub fingerprint: Option<String>,

    /// Output format: a table, or the API's JSON
    #[arg(
        long,
        short = 'o',
        global = true,
        value_enum,
        default_value_t = OutputFormat::Table,
        help_heading = "Global options"
    )]
    pub output: OutputFormat,

    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    /// The TLS trust given on the command line.
    pub fn trust_flags(&self) -> crate::config::TrustFlags<'_> {
        crate::config::TrustFlags { ca_cert: self.ca_cert.as_deref(), fingerprint: self.fingerprint.as_deref() }
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Log in (with --user: a password for a session token; else check a token) and save the
    /// server, token and TLS trust (--ca-cert or --fingerprint) for later commands
    Login(LoginArgs),
    /// Projects: the unit of tenancy
    #[command(subcommand)]
    Project(ProjectCommand),
    /// Bootable images (public, or a project's own)
    #[command(subcommand)]
    Image(ImageCommand),
    /// Instance types (plans): the sizes an instance can have
    #[command(subcommand)]
    InstanceType(InstanceTypeCommand),
    /// Virtual machines
    #[command(subcommand)]
    Instance(InstanceCommand),
    /// What happened to a project's resources, oldest first
    #[command(subcommand)]
    Event(EventCommand),
    /// Hosts: capacity, state, cordoning, join tokens (operators)
    #[command(subcommand)]
    Host(HostCommand),
    /// Zones: named groups of hosts (operators)
    #[command(subcommand)]
    Zone(crate::zones::ZoneCommand),
    /// The control plane's background reconcilers (operators)
    #[command(subcommand)]
    Reconciler(crate::system::ReconcilerCommand),
    /// Users (operators)
    #[command(subcommand)]
    User(crate::users::UserCommand),
    /// Your API tokens
    #[command(subcommand)]
    Token(crate::tokens::TokenCommand),
    /// Your S3 access keys in a project (credentials of the object storage endpoint)
    #[command(subcommand)]
    AccessKey(crate::access_keys::AccessKeyCommand),
    /// Object storage buckets of a project: objects, size, public-read
    #[command(subcommand)]
    Bucket(crate::buckets::BucketCommand),
    /// Who changed what, oldest first (operators; owners with --project)
    AuditLog(crate::audit::AuditArgs),
    /// Project quotas: limits and use
    #[command(subcommand)]
    Quota(crate::quotas::QuotaCommand),
    /// The price catalogue (operators)
    #[command(subcommand)]
    Price(crate::prices::PriceCommand),
    /// A project's usage and cost (default: month to date)
    Usage(crate::usage::UsageArgs),
    /// Invoices of closed months
    #[command(subcommand)]
    Invoice(crate::invoices::InvoiceCommand),
    /// A project's monthly budget and alert threshold
    #[command(subcommand)]
    Budget(crate::budgets::BudgetCommand),
    /// Block storage volumes: disks that outlive instances
    #[command(subcommand)]
    Volume(crate::volumes::VolumeCommand),
    /// Snapshots of volumes
    #[command(subcommand)]
    Snapshot(crate::snapshots::SnapshotCommand),
    /// Backups of volumes
    #[command(subcommand)]
    Backup(crate::backups::BackupCommand),
    /// Virtual private clouds: a project's isolated networks
    #[command(subcommand)]
    Vpc(crate::network::VpcCommand),
    /// Subnets of a VPC (instances get their address from one)
    #[command(subcommand)]
    Subnet(crate::network::SubnetCommand),
    /// Security groups: the firewall of instances
    #[command(subcommand)]
    SecurityGroup(crate::network::SecurityGroupCommand),
    /// SSH public keys given to instances
    #[command(subcommand)]
    SshKey(crate::network::SshKeyCommand),
    /// Public addresses attached to instances
    #[command(subcommand)]
    FloatingIp(crate::network::FloatingIpCommand),
    /// Placement groups: how instances are placed relative to each other (spread, pack, anti-affinity, affinity)
    #[command(subcommand)]
    PlacementGroup(crate::placement_groups::PlacementGroupCommand),
}

/// The project a tenant resource lives in.
#[derive(Debug, Clone, Args)]
pub struct ProjectArg {
    /// Project (name or id)
    #[arg(long, env = "KUMO_PROJECT", value_name = "PROJECT")]
    pub project: String,
}

/// Options of every list command.
#[derive(Debug, Clone, Args)]
pub struct ListArgs {
    /// Show at most this many items (default: all, fetched page by page)
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub limit: Option<u32>,
}

impl ListArgs {
    pub fn cap(&self) -> Option<usize> {
        self.limit.map(|n| n as usize)
    }
}

/// clap value parser for a new resource's name: refuses bad names before any request, with the
/// same explanation the API would give.
pub fn parse_name(s: &str) -> Result<Name, String> {
    Name::parse(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::instances::InstanceCommand as I;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("kumo").chain(args.iter().copied()))
    }

    #[test]
    fn the_command_tree_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn global_options_go_anywhere() {
        let cli = parse(&["project", "list", "--url", "http://h:1", "-o", "json", "--token", "t"]).expect("parse");
        assert_eq!(cli.url.as_deref(), Some("http://h:1"));
        assert_eq!(cli.token.as_deref(), Some("t"));
        assert_eq!(cli.output, OutputFormat::Json);
        assert!(matches!(cli.command, Command::Project(ProjectCommand::List(_))));
        assert_eq!(parse(&["host", "list"]).expect("parse").output, OutputFormat::Table);
        assert!(parse(&["host", "list", "--output", "yaml"]).is_err());
    }

    #[test]
    fn instance_create_takes_all_its_options() {
        let cli = parse(&[
            "instance",
            "create",
            "web1",
            "--project",
            "demo",
            "--image",
            "tiny",
            "--type",
            "small",
            "--description",
            "front",
            "--user-data-file",
            "ud.sh",
            "--wait",
            "--timeout",
            "60",
        ])
        .expect("parse");
        let Command::Instance(I::Create(c)) = cli.command else { panic!("not instance create") };
        assert_eq!(c.name.as_str(), "web1");
        assert_eq!(c.project.project, "demo");
        assert_eq!((c.image.as_str(), c.instance_type.as_str()), ("tiny", "small"));
        assert_eq!(c.description, "front");
        assert_eq!(c.user_data_file.as_deref(), Some(std::path::Path::new("ud.sh")));
        assert!(c.wait.wait);
        assert_eq!(c.wait.timeout, 60);
    }

    #[test]
    fn bad_names_are_refused_before_any_request() {
        let err = parse(&["project", "create", "Web_1"]).expect_err("bad name");
        assert!(err.to_string().contains("uppercase"), "{err}");
    }

    #[test]
    fn actions_require_a_project_and_view_has_no_wait() {
        if std::env::var_os("KUMO_PROJECT").is_none() {
            assert!(parse(&["instance", "stop", "web1"]).is_err());
        }
        assert!(parse(&["instance", "stop", "web1", "--project", "p", "--wait"]).is_ok());
        assert!(parse(&["instance", "view", "web1", "--project", "p", "--wait"]).is_err());
        let cli = parse(&["instance", "resize", "web1", "--type", "large", "--project", "p"]).expect("parse");
        assert!(matches!(cli.command, Command::Instance(I::Resize(r)) if r.instance_type == "large"));
    }

    #[test]
    fn billing_commands_parse() {
        use crate::quotas::{Limit, QuotaCommand};
        let cli = parse(&[
            "quota",
            "set",
            "shop",
            "--instances",
            "10",
            "--vcpus",
            "16",
            "--memory-gib",
            "32",
            "--storage-gib",
            "500",
            "--floating-ips",
            "unlimited",
        ])
        .expect("parse");
        assert!(matches!(cli.command, Command::Quota(QuotaCommand::Set(ref q))
            if q.vcpus == Some(Limit::At(16)) && q.floating_ips == Some(Limit::Unlimited)));
        assert!(parse(&["price", "set", "instance-type", "k1-small", "--per-hour", "0.012"]).is_ok());
        assert!(parse(&["price", "set", "volume", "--per-gib-month", "0.10"]).is_ok());
        assert!(parse(&["usage", "--project", "shop", "--month", "2026-12"]).is_ok());
        assert!(parse(&["usage", "--project", "shop", "--month", "2026-12", "--from", "x"]).is_err());
        assert!(parse(&["invoice", "show", "2026-11", "--project", "shop"]).is_ok());
        assert!(parse(&["invoice", "list", "--project", "shop"]).is_ok());
        assert!(parse(&["budget", "set", "shop", "--monthly", "50", "--alert-at", "80"]).is_ok());
    }

    #[test]
    fn identity_commands_parse() {
        use crate::members::{MemberCommand, RoleArg};
        use crate::tokens::TokenCommand;
        use crate::users::UserCommand;
        let cli = parse(&["user", "create", "alice", "--password-stdin", "--operator"]).expect("parse");
        assert!(matches!(cli.command, Command::User(UserCommand::Create(ref c))
            if c.name.as_str() == "alice" && c.password_stdin && c.operator));
        assert!(parse(&["user", "create", "Alice"]).is_err(), "user names are names");
        let cli = parse(&["login", "--user", "alice", "--url", "http://h:1", "--password-stdin"]).expect("parse");
        assert!(matches!(cli.command, Command::Login(ref l) if l.user.as_deref() == Some("alice") && l.password_stdin));
        assert!(parse(&["login", "--password-stdin"]).is_err(), "--password-stdin needs --user");
        assert!(parse(&["login", "--user", "a", "--token-file", "f"]).is_err());
        let cli = parse(&["token", "create", "ci", "--expires", "30d"]).expect("parse");
        assert!(
            matches!(cli.command, Command::Token(TokenCommand::Create { ref name, expires: Some(30) }) if name.as_str() == "ci")
        );
        assert!(parse(&["token", "create", "ci", "--expires", "soon"]).is_err());
        let cli = parse(&["project", "member", "add", "shop", "alice", "--role", "owner"]).expect("parse");
        assert!(
            matches!(cli.command, Command::Project(ProjectCommand::Member(MemberCommand::Add { ref project, ref user, role: RoleArg::Owner }))
            if project == "shop" && user == "alice")
        );
        assert!(parse(&["project", "member", "add", "shop", "alice", "--role", "boss"]).is_err());
        let cli = parse(&["audit-log", "--since", "1h", "--user", "alice", "--project", "shop"]).expect("parse");
        let Command::AuditLog(a) = cli.command else { panic!("not audit-log") };
        assert_eq!(a.query(), vec![("since", "1h"), ("user", "alice"), ("project", "shop")]);
        for args in [
            vec!["user", "list"],
            vec!["user", "view", "alice"],
            vec!["user", "delete", "alice"],
            vec!["token", "list"],
            vec!["token", "delete", "ci"],
            vec!["project", "member", "list", "shop"],
            vec!["project", "member", "remove", "shop", "alice"],
            vec!["audit-log"],
        ] {
            parse(&args).unwrap_or_else(|e| panic!("{args:?}: {e}"));
        }
    }

    #[test]
    fn access_key_commands_parse() {
        use crate::access_keys::AccessKeyCommand as A;
        let cli =
            parse(&["access-key", "create", "backup", "--description", "nightly", "--project", "shop"]).expect("parse");
        let Command::AccessKey(A::Create(c)) = cli.command else { panic!("not access-key create") };
        assert_eq!(
            (c.name.as_str(), c.description.as_str(), c.project.project.as_str()),
            ("backup", "nightly", "shop")
        );
        let cli = parse(&["access-key", "create", "ci", "--project", "shop", "-o", "json"]).expect("parse");
        assert_eq!(cli.output, OutputFormat::Json);
        assert!(matches!(cli.command, Command::AccessKey(A::Create(ref c)) if c.description.is_empty()));
        let cli = parse(&["access-key", "list", "--project", "shop", "--limit", "3"]).expect("parse");
        assert!(matches!(cli.command, Command::AccessKey(A::List { ref project, ref list })
            if project.project == "shop" && list.limit == Some(3)));
        let cli = parse(&["access-key", "delete", "backup", "--project", "shop"]).expect("parse");
        assert!(matches!(cli.command, Command::AccessKey(A::Delete(ref r))
            if r.access_key == "backup" && r.project.project == "shop"));
        assert!(parse(&["access-key", "view", "backup", "--project", "shop"]).is_ok());
        let err = parse(&["access-key", "create", "Backup_1", "--project", "shop"]).expect_err("bad name");
        assert!(err.to_string().contains("uppercase"), "{err}");
        if std::env::var_os("KUMO_PROJECT").is_none() {
            assert!(parse(&["access-key", "create", "backup"]).is_err(), "--project is required");
            assert!(parse(&["access-key", "list"]).is_err(), "--project is required");
            assert!(parse(&["access-key", "delete", "backup"]).is_err(), "--project is required");
        }
        assert!(parse(&["access-key", "delete", "--project", "shop"]).is_err(), "the key is required");
    }

    #[test]
    fn other_commands_parse() {
        let ok = [
            vec!["login", "--url", "http://h", "--token-file", "/tmp/t"],
            vec!["project", "create", "demo", "--description", "d"],
            vec!["project", "view", "demo"],
            vec!["image", "list"],
            vec!["image", "import", "disk.qcow2", "--name", "img", "--project", "p"],
            vec!["image", "delete", "img", "--project", "p"],
            vec!["instance-type", "create", "small", "--vcpus", "1", "--memory-mib", "512", "--disk-gib", "10"],
            vec!["instance-type", "delete", "small"],
            vec!["instance", "serial", "web1", "--project", "p", "--follow"],
            vec!["instance", "list", "--project", "p", "--limit", "5"],
            vec!["event", "list", "--project", "p", "--instance", "web1"],
            vec!["host", "view", "h1"],
            vec!["host", "cordon", "h1"],
            vec!["host", "uncordon", "h1"],
            vec!["host", "join-token", "create", "--zone", "east", "--expires", "1h"],
            vec!["zone", "list"],
            vec!["zone", "create", "east", "--description", "the east room"],
            vec!["zone", "view", "east"],
            vec!["instance", "create", "w", "--project", "p", "--image", "i", "--type", "k1-nano", "--zone", "east"],
        ];
        for args in ok {
            parse(&args).unwrap_or_else(|e| panic!("{args:?}: {e}"));
        }
        assert!(parse(&["project", "list", "--limit", "0"]).is_err());
        assert!(parse(&["instance-type", "create", "x", "--vcpus", "1"]).is_err());
        assert!(parse(&["host", "join-token", "create", "--zone", "east", "--expires", "1w"]).is_err());
        assert!(parse(&["host", "join-token", "create"]).is_err(), "--zone is required");
    }
}
