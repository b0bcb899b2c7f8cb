//! The network page: VPCs and their subnets, security groups with a rule editor, SSH keys and
//! floating IPs. Every form posts to a handler here that calls the app layer function the REST
//! API's handler calls (the rule editor sends the whole list, as `PUT .../rules` does), so
//! authorisation, validation and messages are the API's.

use crate::form::Fields;
use crate::instances::{go, instance_names, page_of, NAME_PATTERN, NAME_RULE};
use crate::render::{self, page, WebError};
use crate::session::Session;
use axum::extract::rejection::FormRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::Form;
use kumo_control::app::{floating_ips, projects, security_groups, ssh_keys, vpcs};
use kumo_control::App;
use kumo_types::network::{RuleDirection, RuleProtocol};
use kumo_types::{
    FloatingIpCreate, Name, SecurityGroupCreate, SecurityRule, SecurityRules, SshKeyCreate, SubnetCreate, VpcCreate,
};
use minijinja::context;
use std::sync::Arc;

fn bad(msg: impl Into<String>) -> WebError {
    WebError::new(StatusCode::BAD_REQUEST, msg)
}

fn name_of(f: &Fields) -> Result<Name, WebError> {
    Name::parse(f.get("name").trim()).map_err(|e| bad(format!("name: {e}")))
}

pub async fn page_view(State(app): State<Arc<App>>, s: Session, Path(p): Path<String>) -> Result<Response, WebError> {
    let project = projects::view(&app, &s.ctx, &p).await?;
    let vpc_list = vpcs::list(&app, &s.ctx, Some(&p), &page_of(1000, None)?).await?.items;
    let subnets = subnets_of(&app, &s, &p, &vpc_list).await?;
    let groups = security_groups::list(&app, &s.ctx, Some(&p), &page_of(1000, None)?).await?.items;
    let mut rules = Vec::with_capacity(groups.len());
    for g in &groups {
        rules.push(security_groups::rules_view(&app, &s.ctx, Some(&p), &g.name).await?.rules);
    }
    let keys = ssh_keys::list(&app, &s.ctx, Some(&p), &page_of(1000, None)?).await?.items;
    let fips = floating_ips::list(&app, &s.ctx, Some(&p), &page_of(1000, None)?).await?.items;
    let insts = instance_names(&app, &s, &p).await?;
    page(
        &s,
        "network.html",
        context! {
            project => project, vpcs => vpc_list, subnets => subnets, groups => groups, rules => rules,
            ssh_keys => keys, floating_ips => fips, instances => insts, section => "network",
            name_pattern => NAME_PATTERN, name_rule => NAME_RULE,
            directions => ["ingress", "egress"], protocols => ["tcp", "udp", "icmp", "any"],
        },
    )
}

/// Back to the page after a change. No `#anchor`: a redirect to the same page with a fragment
/// would only scroll, not reload.
/// The subnets of every VPC in `vpcs` (the subnet list is per VPC).
pub async fn subnets_of(
    app: &App,
    s: &Session,
    p: &str,
    vpcs: &[kumo_types::VpcView],
) -> Result<Vec<kumo_types::SubnetView>, WebError> {
    let mut out = Vec::new();
    for v in vpcs {
        out.extend(vpcs::subnet_list(app, &s.ctx, Some(p), Some(&v.name), &page_of(1000, None)?).await?.items);
    }
    Ok(out)
}

fn back(p: &str, _section: &str) -> String {
    format!("/projects/{}/network", render::urlencode(p))
}

/// Creates a VPC, a security group, an SSH key (import) or a floating IP.
pub async fn create(
    State(app): State<Arc<App>>,
    s: Session,
    Path((p, kind)): Path<(String, String)>,
    headers: HeaderMap,
    form: Result<Form<Fields>, FormRejection>,
) -> Result<Response, WebError> {
    let f = s.checked_form(&headers, form)?;
    let description = f.get("description").to_string();
    match kind.as_str() {
        "vpcs" => {
            let c = VpcCreate { name: name_of(&f)?, description, ipv4_cidr: f.get("ipv4_cidr").trim().to_string() };
            vpcs::create(&app, &s.ctx, Some(&p), &c).await?;
        }
        "security-groups" => {
            let c = SecurityGroupCreate { name: name_of(&f)?, description };
            security_groups::create(&app, &s.ctx, Some(&p), &c).await?;
        }
        "ssh-keys" => {
            let c =
                SshKeyCreate { name: name_of(&f)?, description, public_key: f.get("public_key").trim().to_string() };
            ssh_keys::create(&app, &s.ctx, Some(&p), &c).await?;
        }
        "floating-ips" => {
            let c = FloatingIpCreate { name: name_of(&f)?, description };
            floating_ips::create(&app, &s.ctx, Some(&p), &c).await?;
        }
        other => return Err(WebError::new(StatusCode::NOT_FOUND, format!("no network resource '{other}'"))),
    }
    Ok(render::with_actor(go(&headers, &back(&p, &kind)), &s))
}

/// The rule editor's rows: `direction.N`, `protocol.N`, `port_range.N`, `source.N` and the
/// `remove.N` checkbox; a row without a source (the blank "add" row) is skipped.
fn rules_of(f: &Fields) -> Result<SecurityRules, WebError> {
    let mut rules = Vec::new();
    for (k, _) in &f.0 {
        let Some(n) = k.strip_prefix("direction.") else { continue };
        let field = |name: &str| f.get(&format!("{name}.{n}")).trim().to_string();
        let source = field("source");
        if source.is_empty() || f.checked(&format!("remove.{n}")) {
            continue;
        }
        let direction = RuleDirection::parse(&field("direction"))
            .ok_or_else(|| bad(format!("rule {}: direction must be ingress or egress", rules.len() + 1)))?;
        let protocol = RuleProtocol::parse(&field("protocol"))
            .ok_or_else(|| bad(format!("rule {}: protocol must be tcp, udp, icmp or any", rules.len() + 1)))?;
        let port_range = Some(field("port_range")).filter(|s| !s.is_empty());
        rules.push(SecurityRule { direction, protocol, port_range, source });
    }
    Ok(SecurityRules { rules })
}

/// Per-resource actions: delete (all), subnets (create a subnet in a VPC), rules (replace a
/// group's rules), attach/detach (floating IPs).
pub async fn act(
    State(app): State<Arc<App>>,
    s: Session,
    Path((p, kind, name, action)): Path<(String, String, String, String)>,
    headers: HeaderMap,
    form: Result<Form<Fields>, FormRejection>,
) -> Result<Response, WebError> {
    let f = s.checked_form(&headers, form)?;
    let ctx = &s.ctx;
    let pr = Some(p.as_str());
    match (kind.as_str(), action.as_str()) {
        ("vpcs", "delete") => vpcs::delete(&app, ctx, pr, &name).await?,
        ("vpcs", "subnets") => {
            let c = SubnetCreate {
                name: name_of(&f)?,
                description: f.get("description").to_string(),
                ipv4_cidr: f.get("ipv4_cidr").trim().to_string(),
            };
            vpcs::subnet_create(&app, ctx, pr, Some(&name), &c).await?;
        }
        ("security-groups", "delete") => security_groups::delete(&app, ctx, pr, &name).await?,
        ("security-groups", "rules") => {
            let rules = rules_of(&f)?;
            security_groups::rules_update(&app, ctx, pr, &name, &rules).await?;
        }
        ("ssh-keys", "delete") => ssh_keys::delete(&app, ctx, pr, &name).await?,
        ("floating-ips", "delete") => floating_ips::delete(&app, ctx, pr, &name).await?,
        ("floating-ips", "attach") => {
            let instance = f.required("instance")?;
            floating_ips::attach(&app, ctx, pr, &name, Some(&instance)).await?;
        }
        ("floating-ips", "detach") => {
            floating_ips::attach(&app, ctx, pr, &name, None).await?;
        }
        _ => return Err(WebError::new(StatusCode::NOT_FOUND, format!("no action '{action}' on {kind}"))),
    }
    Ok(render::with_actor(go(&headers, &back(&p, &kind)), &s))
}

pub async fn subnet_delete(
    State(app): State<Arc<App>>,
    s: Session,
    Path((p, v, sn)): Path<(String, String, String)>,
    headers: HeaderMap,
    form: Result<Form<Fields>, FormRejection>,
) -> Result<Response, WebError> {
    s.checked_form(&headers, form)?;
    vpcs::subnet_delete(&app, &s.ctx, Some(&p), Some(&v), &sn).await?;
    Ok(render::with_actor(go(&headers, &back(&p, "vpcs")), &s))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(pairs: &[(&str, &str)]) -> Fields {
        Fields(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect())
    }

    #[test]
    fn rule_editor_rows_become_the_whole_list() {
        let f = fields(&[
            ("direction.0", "ingress"),
            ("protocol.0", "tcp"),
            ("port_range.0", "22"),
            ("source.0", "0.0.0.0/0"),
            ("direction.1", "ingress"),
            ("protocol.1", "icmp"),
            ("port_range.1", ""),
            ("source.1", "10.0.0.0/8"),
            ("remove.1", "on"),
            ("direction.2", "egress"),
            ("protocol.2", "any"),
            ("port_range.2", ""),
            ("source.2", ""),
        ]);
        let r = rules_of(&f).expect("rules");
        assert_eq!(r.rules.len(), 1, "the removed row and the blank row are not rules");
        assert_eq!(r.rules[0].port_range.as_deref(), Some("22"));
        assert_eq!(r.rules[0].protocol, RuleProtocol::Tcp);
        let bad = fields(&[("direction.0", "sideways"), ("protocol.0", "tcp"), ("source.0", "0.0.0.0/0")]);
        assert!(rules_of(&bad).is_err());
    }
}
