//! `kumo vpc|subnet|security-group|ssh-key|floating-ip …`: tenant networking.

use crate::cli::{parse_name, ListArgs, ProjectArg};
use crate::output::{self, list_table, or_dash, time_with_age, view_table};
use crate::Ctx;
use anyhow::{bail, Context, Result};
use chrono::Utc;
use clap::{Args, Subcommand};
use kumo_types::network::{RuleDirection, RuleProtocol};
use kumo_types::{
    FloatingIpAttach, FloatingIpCreate, FloatingIpView, Name, SecurityGroupCreate, SecurityGroupView, SecurityRule,
    SecurityRules, SshKeyCreate, SshKeyView, SubnetCreate, SubnetView, VpcCreate, VpcView,
};
use serde_json::Value;
use std::path::PathBuf;

/// A named resource of a project.
#[derive(Debug, Args)]
pub struct Ref {
    /// Name or id
    pub name: String,
    #[command(flatten)]
    pub project: ProjectArg,
}

#[derive(Debug, Args)]
pub struct ProjectList {
    #[command(flatten)]
    pub project: ProjectArg,
    #[command(flatten)]
    pub list: ListArgs,
}

#[derive(Debug, Subcommand)]
pub enum VpcCommand {
    /// List a project's VPCs
    List(ProjectList),
    /// Show one VPC
    View(Ref),
    /// Create a VPC
    Create {
        #[arg(value_parser = parse_name)]
        name: Name,
        #[command(flatten)]
        project: ProjectArg,
        /// Its private IPv4 range, e.g. 10.10.0.0/16
        #[arg(long)]
        cidr: String,
        /// Free-form description
        #[arg(long, default_value = "")]
        description: String,
    },
    /// Delete a VPC without instances
    Delete(Ref),
}

#[derive(Debug, Args)]
pub struct SubnetRef {
    /// Subnet name or id
    pub name: String,
    /// VPC (name or id)
    #[arg(long)]
    pub vpc: String,
    #[command(flatten)]
    pub project: ProjectArg,
}

#[derive(Debug, Subcommand)]
pub enum SubnetCommand {
    /// List a VPC's subnets
    List {
        /// VPC (name or id)
        #[arg(long)]
        vpc: String,
        #[command(flatten)]
        project: ProjectArg,
        #[command(flatten)]
        list: ListArgs,
    },
    /// Show one subnet
    View(SubnetRef),
    /// Create a subnet inside a VPC
    Create {
        #[arg(value_parser = parse_name)]
        name: Name,
        /// VPC (name or id)
        #[arg(long)]
        vpc: String,
        #[command(flatten)]
        project: ProjectArg,
        /// Its IPv4 range, inside the VPC's, e.g. 10.10.1.0/24
        #[arg(long)]
        cidr: String,
        /// Free-form description
        #[arg(long, default_value = "")]
        description: String,
    },
    /// Delete a subnet without instances
    Delete(SubnetRef),
}

#[derive(Debug, Subcommand)]
pub enum SecurityGroupCommand {
    /// List a project's security groups
    List(ProjectList),
    /// Show one security group
    View(Ref),
    /// Create a security group (no rules: members reach each other, nothing else gets in)
    Create {
        #[arg(value_parser = parse_name)]
        name: Name,
        #[command(flatten)]
        project: ProjectArg,
        /// Free-form description
        #[arg(long, default_value = "")]
        description: String,
    },
    /// Delete a security group no instance uses
    Delete(Ref),
    /// A group's rules
    #[command(subcommand)]
    Rule(RuleCommand),
}

#[derive(Debug, Args)]
pub struct RuleArgs {
    /// Security group name or id
    pub group: String,
    #[command(flatten)]
    pub project: ProjectArg,
    /// Traffic towards the instance
    #[arg(long, conflicts_with = "egress")]
    pub ingress: bool,
    /// Traffic from the instance
    #[arg(long)]
    pub egress: bool,
    /// tcp, udp, icmp or any
    #[arg(long, default_value = "tcp")]
    pub protocol: String,
    /// A port (80) or a range (8000-8080); tcp and udp only
    #[arg(long)]
    pub port: Option<String>,
    /// A CIDR (0.0.0.0/0) or a security group name
    #[arg(long, default_value = "0.0.0.0/0")]
    pub source: String,
}

impl RuleArgs {
    fn rule(&self) -> Result<SecurityRule> {
        let Some(protocol) = RuleProtocol::parse(&self.protocol) else {
            bail!("--protocol must be tcp, udp, icmp or any (got '{}')", self.protocol);
        };
        Ok(SecurityRule {
            direction: if self.egress { RuleDirection::Egress } else { RuleDirection::Ingress },
            protocol,
            port_range: self.port.clone(),
            source: self.source.clone(),
        })
    }
}

#[derive(Debug, Subcommand)]
pub enum RuleCommand {
    /// List a group's rules
    List(Ref),
    /// Add a rule (the whole list is replaced atomically)
    Add(RuleArgs),
    /// Remove the rules equal to this one
    Remove(RuleArgs),
    /// Replace every rule with the JSON list in FILE ({"rules":[…]})
    Set {
        /// Security group name or id
        group: String,
        #[command(flatten)]
        project: ProjectArg,
        /// JSON file with {"rules": [...]}
        #[arg(long)]
        file: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum SshKeyCommand {
    /// List a project's SSH keys
    List(ProjectList),
    /// Show one SSH key
    View(Ref),
    /// Import a public key
    Import {
        #[arg(value_parser = parse_name)]
        name: Name,
        #[command(flatten)]
        project: ProjectArg,
        /// The public key file (e.g. ~/.ssh/id_ed25519.pub)
        #[arg(long)]
        public_key_file: PathBuf,
        /// Free-form description
        #[arg(long, default_value = "")]
        description: String,
    },
    /// Delete an SSH key (instances keep the copy they got)
    Delete(Ref),
}

#[derive(Debug, Subcommand)]
pub enum FloatingIpCommand {
    /// List a project's floating IPs
    List(ProjectList),
    /// Show one floating IP
    View(Ref),
    /// Allocate a public address from the cloud's pool
    Create {
        #[arg(value_parser = parse_name)]
        name: Name,
        #[command(flatten)]
        project: ProjectArg,
        /// Free-form description
        #[arg(long, default_value = "")]
        description: String,
    },
    /// Release a floating IP
    Delete(Ref),
    /// Attach it to an instance
    Attach {
        /// Floating IP name or id
        name: String,
        /// Instance (name or id)
        #[arg(long)]
        instance: String,
        #[command(flatten)]
        project: ProjectArg,
    },
    /// Detach it from its instance
    Detach(Ref),
}

fn q(p: &ProjectArg) -> [(&str, &str); 1] {
    [("project", p.project.as_str())]
}

pub fn run_vpc(ctx: &Ctx, c: &VpcCommand) -> Result<()> {
    match c {
        VpcCommand::List(a) => ctx.show(&ctx.client.list_all(&["vpcs"], &q(&a.project), a.list.cap())?, render_vpcs),
        VpcCommand::View(r) => ctx.show(&ctx.client.get(&["vpcs", &r.name], &q(&r.project))?, render_vpc),
        VpcCommand::Create { name, project, cidr, description } => {
            let body = VpcCreate { name: name.clone(), description: description.clone(), ipv4_cidr: cidr.clone() };
            ctx.show(&ctx.client.post(&["vpcs"], &q(project), Some(&body))?, render_vpc)
        }
        VpcCommand::Delete(r) => {
            ctx.client.delete(&["vpcs", &r.name], &q(&r.project))?;
            ctx.done(&format!("deleted vpc {}", r.name));
            Ok(())
        }
    }
}

pub fn run_subnet(ctx: &Ctx, c: &SubnetCommand) -> Result<()> {
    match c {
        SubnetCommand::List { vpc, project, list } => {
            let query = [("project", project.project.as_str()), ("vpc", vpc.as_str())];
            ctx.show(&ctx.client.list_all(&["vpc-subnets"], &query, list.cap())?, render_subnets)
        }
        SubnetCommand::View(r) => {
            let query = [("project", r.project.project.as_str()), ("vpc", r.vpc.as_str())];
            ctx.show(&ctx.client.get(&["vpc-subnets", &r.name], &query)?, render_subnet)
        }
        SubnetCommand::Create { name, vpc, project, cidr, description } => {
            let body = SubnetCreate { name: name.clone(), description: description.clone(), ipv4_cidr: cidr.clone() };
            let query = [("project", project.project.as_str()), ("vpc", vpc.as_str())];
            ctx.show(&ctx.client.post(&["vpc-subnets"], &query, Some(&body))?, render_subnet)
        }
        SubnetCommand::Delete(r) => {
            let query = [("project", r.project.project.as_str()), ("vpc", r.vpc.as_str())];
            ctx.client.delete(&["vpc-subnets", &r.name], &query)?;
            ctx.done(&format!("deleted subnet {}", r.name));
            Ok(())
        }
    }
}

pub fn run_security_group(ctx: &Ctx, c: &SecurityGroupCommand) -> Result<()> {
    match c {
        SecurityGroupCommand::List(a) => {
            ctx.show(&ctx.client.list_all(&["security-groups"], &q(&a.project), a.list.cap())?, render_groups)
        }
        SecurityGroupCommand::View(r) => {
            ctx.show(&ctx.client.get(&["security-groups", &r.name], &q(&r.project))?, render_group)
        }
        SecurityGroupCommand::Create { name, project, description } => {
            let body = SecurityGroupCreate { name: name.clone(), description: description.clone() };
            ctx.show(&ctx.client.post(&["security-groups"], &q(project), Some(&body))?, render_group)
        }
        SecurityGroupCommand::Delete(r) => {
            ctx.client.delete(&["security-groups", &r.name], &q(&r.project))?;
            ctx.done(&format!("deleted security group {}", r.name));
            Ok(())
        }
        SecurityGroupCommand::Rule(rc) => run_rule(ctx, rc),
    }
}

fn rules_of(ctx: &Ctx, group: &str, project: &ProjectArg) -> Result<SecurityRules> {
    let v = ctx.client.get(&["security-groups", group, "rules"], &q(project))?;
    Ok(serde_json::from_value(v.to_value())?)
}

fn run_rule(ctx: &Ctx, c: &RuleCommand) -> Result<()> {
    let (group, project, rules) = match c {
        RuleCommand::List(r) => {
            return ctx.show(&ctx.client.get(&["security-groups", &r.name, "rules"], &q(&r.project))?, render_rules)
        }
        RuleCommand::Add(a) => {
            let mut rules = rules_of(ctx, &a.group, &a.project)?;
            rules.rules.push(a.rule()?);
            (&a.group, &a.project, rules)
        }
        RuleCommand::Remove(a) => {
            let mut rules = rules_of(ctx, &a.group, &a.project)?;
            let rule = a.rule()?;
            let before = rules.rules.len();
            rules.rules.retain(|r| *r != rule);
            if rules.rules.len() == before {
                bail!("security group '{}' has no such rule (see `kumo security-group rule list`)", a.group);
            }
            (&a.group, &a.project, rules)
        }
        RuleCommand::Set { group, project, file } => {
            let text = std::fs::read_to_string(file).with_context(|| format!("read {}", file.display()))?;
            let rules: SecurityRules =
                serde_json::from_str(&text).with_context(|| format!("parse {}", file.display()))?;
            (group, project, rules)
        }
    };
    let v = ctx.client.put(&["security-groups", group, "rules"], &q(project), &rules)?;
    ctx.show(&v, render_rules)
}

pub fn run_ssh_key(ctx: &Ctx, c: &SshKeyCommand) -> Result<()> {
    match c {
        SshKeyCommand::List(a) => {
            ctx.show(&ctx.client.list_all(&["ssh-keys"], &q(&a.project), a.list.cap())?, render_keys)
        }
        SshKeyCommand::View(r) => ctx.show(&ctx.client.get(&["ssh-keys", &r.name], &q(&r.project))?, render_key),
        SshKeyCommand::Import { name, project, public_key_file, description } => {
            let key = std::fs::read_to_string(public_key_file)
                .with_context(|| format!("read {}", public_key_file.display()))?;
            let body =
                SshKeyCreate { name: name.clone(), description: description.clone(), public_key: key.trim().into() };
            ctx.show(&ctx.client.post(&["ssh-keys"], &q(project), Some(&body))?, render_key)
        }
        SshKeyCommand::Delete(r) => {
            ctx.client.delete(&["ssh-keys", &r.name], &q(&r.project))?;
            ctx.done(&format!("deleted ssh key {}", r.name));
            Ok(())
        }
    }
}

pub fn run_floating_ip(ctx: &Ctx, c: &FloatingIpCommand) -> Result<()> {
    match c {
        FloatingIpCommand::List(a) => {
            ctx.show(&ctx.client.list_all(&["floating-ips"], &q(&a.project), a.list.cap())?, render_fips)
        }
        FloatingIpCommand::View(r) => {
            ctx.show(&ctx.client.get(&["floating-ips", &r.name], &q(&r.project))?, render_fip)
        }
        FloatingIpCommand::Create { name, project, description } => {
            let body = FloatingIpCreate { name: name.clone(), description: description.clone() };
            ctx.show(&ctx.client.post(&["floating-ips"], &q(project), Some(&body))?, render_fip)
        }
        FloatingIpCommand::Delete(r) => {
            ctx.client.delete(&["floating-ips", &r.name], &q(&r.project))?;
            ctx.done(&format!("released floating ip {}", r.name));
            Ok(())
        }
        FloatingIpCommand::Attach { name, instance, project } => {
            let body = FloatingIpAttach { instance: instance.clone() };
            ctx.show(&ctx.client.post(&["floating-ips", name, "attach"], &q(project), Some(&body))?, render_fip)
        }
        FloatingIpCommand::Detach(r) => {
            let v = ctx.client.post::<()>(&["floating-ips", &r.name, "detach"], &q(&r.project), None)?;
            ctx.show(&v, render_fip)
        }
    }
}

fn render_vpcs(page: &Value) -> Result<String> {
    let mut t = list_table(&["NAME", "CIDR", "VNI", "DESCRIPTION"]);
    for v in output::items::<VpcView>(page)? {
        t.add_row(vec![v.name, v.ipv4_cidr, v.vni.to_string(), or_dash(Some(&v.description))]);
    }
    Ok(output::render(&t))
}

fn render_vpc(value: &Value) -> Result<String> {
    let v: VpcView = output::view(value)?;
    Ok(output::render(&view_table(vec![
        ("NAME", v.name),
        ("ID", v.id.to_string()),
        ("PROJECT", v.project),
        ("CIDR", v.ipv4_cidr),
        ("VNI", v.vni.to_string()),
        ("DESCRIPTION", or_dash(Some(&v.description))),
        ("CREATED", time_with_age(v.time_created, Utc::now())),
    ])))
}

fn render_subnets(page: &Value) -> Result<String> {
    let mut t = list_table(&["NAME", "VPC", "CIDR", "GATEWAY", "ALLOCATED"]);
    for s in output::items::<SubnetView>(page)? {
        t.add_row(vec![s.name, s.vpc, s.ipv4_cidr, s.gateway, format!("{}/{}", s.allocated, s.capacity)]);
    }
    Ok(output::render(&t))
}

fn render_subnet(value: &Value) -> Result<String> {
    let s: SubnetView = output::view(value)?;
    Ok(output::render(&view_table(vec![
        ("NAME", s.name),
        ("ID", s.id.to_string()),
        ("VPC", s.vpc),
        ("CIDR", s.ipv4_cidr),
        ("GATEWAY", s.gateway),
        ("ALLOCATED", format!("{} of {}", s.allocated, s.capacity)),
        ("CREATED", time_with_age(s.time_created, Utc::now())),
    ])))
}

fn render_groups(page: &Value) -> Result<String> {
    let mut t = list_table(&["NAME", "RULES", "DESCRIPTION"]);
    for g in output::items::<SecurityGroupView>(page)? {
        t.add_row(vec![g.name, g.rule_count.to_string(), or_dash(Some(&g.description))]);
    }
    Ok(output::render(&t))
}

fn render_group(value: &Value) -> Result<String> {
    let g: SecurityGroupView = output::view(value)?;
    Ok(output::render(&view_table(vec![
        ("NAME", g.name),
        ("ID", g.id.to_string()),
        ("RULES", g.rule_count.to_string()),
        ("DESCRIPTION", or_dash(Some(&g.description))),
        ("CREATED", time_with_age(g.time_created, Utc::now())),
    ])))
}

fn render_rules(value: &Value) -> Result<String> {
    let rules: SecurityRules = serde_json::from_value(value.clone())?;
    let mut t = list_table(&["DIRECTION", "PROTOCOL", "PORTS", "SOURCE"]);
    for r in rules.rules {
        t.add_row(vec![
            r.direction.as_str().into(),
            r.protocol.as_str().into(),
            or_dash(r.port_range.as_deref()),
            r.source,
        ]);
    }
    Ok(output::render(&t))
}

fn render_keys(page: &Value) -> Result<String> {
    let mut t = list_table(&["NAME", "KEY", "DESCRIPTION"]);
    for k in output::items::<SshKeyView>(page)? {
        let short: String = k.public_key.chars().take(40).collect();
        t.add_row(vec![k.name, format!("{short}…"), or_dash(Some(&k.description))]);
    }
    Ok(output::render(&t))
}

fn render_key(value: &Value) -> Result<String> {
    let k: SshKeyView = output::view(value)?;
    Ok(output::render(&view_table(vec![
        ("NAME", k.name),
        ("ID", k.id.to_string()),
        ("PUBLIC KEY", k.public_key),
        ("CREATED", time_with_age(k.time_created, Utc::now())),
    ])))
}

fn render_fips(page: &Value) -> Result<String> {
    let mut t = list_table(&["NAME", "IP", "INSTANCE"]);
    for f in output::items::<FloatingIpView>(page)? {
        t.add_row(vec![f.name, f.ip, or_dash(f.instance.as_deref())]);
    }
    Ok(output::render(&t))
}

fn render_fip(value: &Value) -> Result<String> {
    let f: FloatingIpView = output::view(value)?;
    Ok(output::render(&view_table(vec![
        ("NAME", f.name),
        ("ID", f.id.to_string()),
        ("IP", f.ip),
        ("INSTANCE", or_dash(f.instance.as_deref())),
        ("CREATED", time_with_age(f.time_created, Utc::now())),
    ])))
}
