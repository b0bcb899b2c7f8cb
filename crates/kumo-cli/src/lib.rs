//! `kumo`, the command-line client of the Kumo REST API.
//!
//! One module per resource (projects, members, images, instance_types, instances, events, hosts,
//! users, tokens, access_keys, audit, quotas, prices, usage, invoices, budgets, volumes, snapshots,
//! backups, zones) declares its subcommands and turns API answers into tables; `client` speaks HTTP (auth, errors,
//! pagination), `wait` implements `--wait`, `config` resolves the server URL, token and TLS trust
//! and implements `kumo login`, `tls` the certificate checks (`--ca-cert`, `--fingerprint`),
//! `output` formats tables and JSON.

pub mod access_keys;
pub mod audit;
pub mod backups;
pub mod buckets;
pub mod budgets;
pub mod cli;
pub mod client;
pub mod config;
pub mod error;
pub mod events;
pub mod hosts;
pub mod images;
pub mod instance_types;
pub mod instances;
pub mod invoices;
pub mod json;
pub mod members;
pub mod metrics;
pub mod network;
pub mod output;
pub mod placement_groups;
pub mod prices;
pub mod projects;
pub mod quotas;
pub mod serial;
pub mod snapshots;
pub mod ssh;
pub mod system;
pub mod tls;
pub mod tokens;
pub mod usage;
pub mod users;
pub mod volumes;
pub mod wait;
pub mod zones;

#[cfg(test)]
mod testserver;

use anyhow::Result;
use cli::{Cli, Command};
use client::Client;
use json::Json;
use output::OutputFormat;
use serde_json::Value;

/// What every command needs: the API client and the output format.
pub struct Ctx {
    pub client: Client,
    pub output: OutputFormat,
}

impl Ctx {
    /// Prints an API answer: as returned with `--output json`, else the table `render` makes.
    pub fn show(&self, value: &Json, render: fn(&Value) -> Result<String>) -> Result<()> {
        match self.output {
            OutputFormat::Json => output::print_json(value),
            OutputFormat::Table => output::emit(&render(&value.to_value())?),
        }
    }

    /// Confirms an operation the API answered without a body (204). With `--output json` the
    /// note goes to stderr so stdout stays exactly what the API returned: nothing.
    pub fn done(&self, message: &str) {
        match self.output {
            OutputFormat::Json => eprintln!("{message}"),
            OutputFormat::Table => {
                let _ = output::emit(message);
            }
        }
    }
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> Result<()> {
    if let Command::Login(args) = &cli.command {
        return config::login(args, cli.url.as_deref(), cli.token.as_deref(), &cli.trust_flags(), cli.output);
    }
    let client = config::client_from(cli.url.as_deref(), cli.token.as_deref(), &cli.trust_flags())?;
    let ctx = Ctx { client, output: cli.output };
    match &cli.command {
        Command::Login(_) => Ok(()),
        Command::Project(c) => projects::run(&ctx, c),
        Command::Image(c) => images::run(&ctx, c),
        Command::InstanceType(c) => instance_types::run(&ctx, c),
        Command::Instance(c) => instances::run(&ctx, c),
        Command::Event(c) => events::run(&ctx, c),
        Command::Host(c) => hosts::run(&ctx, c),
        Command::Zone(c) => zones::run(&ctx, c),
        Command::Reconciler(c) => system::run(&ctx, c),
        Command::User(c) => users::run(&ctx, c),
        Command::Token(c) => tokens::run(&ctx, c),
        Command::AccessKey(c) => access_keys::run(&ctx, c),
        Command::Bucket(c) => buckets::run(&ctx, c),
        Command::AuditLog(a) => audit::run(&ctx, a),
        Command::Quota(c) => quotas::run(&ctx, c),
        Command::Price(c) => prices::run(&ctx, c),
        Command::Usage(a) => usage::run(&ctx, a),
        Command::Invoice(c) => invoices::run(&ctx, c),
        Command::Budget(c) => budgets::run(&ctx, c),
        Command::Volume(c) => volumes::run(&ctx, c),
        Command::Snapshot(c) => snapshots::run(&ctx, c),
        Command::Backup(c) => backups::run(&ctx, c),
        Command::Vpc(c) => network::run_vpc(&ctx, c),
        Command::Subnet(c) => network::run_subnet(&ctx, c),
        Command::SecurityGroup(c) => network::run_security_group(&ctx, c),
        Command::SshKey(c) => network::run_ssh_key(&ctx, c),
        Command::PlacementGroup(c) => placement_groups::run(&ctx, c),
        Command::FloatingIp(c) => network::run_floating_ip(&ctx, c),
    }
}

/// `error: <what went wrong>`, with the causes of non-API errors after colons.
pub fn format_error(err: &anyhow::Error) -> String {
    format!("error: {err:#}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    #[test]
    fn api_errors_print_as_the_brief_says() {
        let body =
            r#"{"request_id":"req-1","error_code":"QuotaExceeded","message":"project 'demo' may use at most 8 vCPUs"}"#;
        let err: anyhow::Error = error::ClientError::from_status("POST", "u", 403, body).into();
        assert_eq!(format_error(&err), "error: project 'demo' may use at most 8 vCPUs (QuotaExceeded, request req-1)");
    }

    #[test]
    fn local_errors_show_their_cause() {
        let io = std::fs::read("/nonexistent/kumo-cli-test").context("reading user data file x");
        let text = format_error(&io.expect_err("missing file"));
        assert!(text.starts_with("error: reading user data file x: "), "{text}");
    }
}
