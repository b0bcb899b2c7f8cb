//! `kumo access-key …`: your S3 access keys in a project (the credentials of the object storage
//! endpoint). A key belongs to the user who makes it and acts with their role in the project; its
//! secret is printed once, at creation, and never again.

use crate::cli::{parse_name, ListArgs, ProjectArg};
use crate::output::{self, list_table, or_dash, timestamp, view_table};
use crate::Ctx;
use anyhow::Result;
use clap::{Args, Subcommand};
use kumo_types::{AccessKeyCreate, AccessKeyCreated, AccessKeyView, Name};
use serde_json::Value;

#[derive(Debug, Subcommand)]
pub enum AccessKeyCommand {
    /// Create an S3 access key for yourself in a project and print its secret (shown only this once)
    Create(AccessKeyCreateArgs),
    /// List a project's S3 access keys (never their secrets)
    List {
        #[command(flatten)]
        project: ProjectArg,
        #[command(flatten)]
        list: ListArgs,
    },
    /// Show one S3 access key (never its secret)
    View(AccessKeyRef),
    /// Delete an S3 access key (yours, or any as an owner of the project); it stops working at once
    Delete(AccessKeyRef),
}

#[derive(Debug, Args)]
pub struct AccessKeyCreateArgs {
    /// Name of the new access key, unique within the project
    #[arg(value_parser = parse_name)]
    pub name: Name,
    #[command(flatten)]
    pub project: ProjectArg,
    /// Free-form description
    #[arg(long, default_value = "")]
    pub description: String,
}

#[derive(Debug, Args)]
pub struct AccessKeyRef {
    /// Access key name or id
    pub access_key: String,
    #[command(flatten)]
    pub project: ProjectArg,
}

pub fn run(ctx: &Ctx, command: &AccessKeyCommand) -> Result<()> {
    match command {
        AccessKeyCommand::Create(a) => {
            let body = AccessKeyCreate { name: a.name.clone(), description: a.description.clone() };
            let created = ctx.client.post(&["access-keys"], &[("project", a.project.project.as_str())], Some(&body))?;
            ctx.show(&created, render_created)
        }
        AccessKeyCommand::List { project, list } => {
            let page = ctx.client.list_all(&["access-keys"], &[("project", &project.project)], list.cap())?;
            ctx.show(&page, render_list)
        }
        AccessKeyCommand::View(r) => {
            let found = ctx.client.get(&["access-keys", &r.access_key], &[("project", &r.project.project)])?;
            ctx.show(&found, render_view)
        }
        AccessKeyCommand::Delete(r) => {
            ctx.client.delete(&["access-keys", &r.access_key], &[("project", &r.project.project)])?;
            ctx.done(&format!("deleted access key {}", r.access_key));
            Ok(())
        }
    }
}

fn render_created(value: &Value) -> Result<String> {
    let c: AccessKeyCreated = output::view(value)?;
    let k = c.key;
    let rows = vec![
        ("ACCESS KEY ID", k.access_key_id),
        ("SECRET ACCESS KEY", c.secret_access_key),
        ("NAME", k.name.clone()),
        ("PROJECT", k.project.clone()),
        ("USER", k.user.clone()),
    ];
    Ok(format!(
        "{}\n\naccess key '{}' of user '{}' in project '{}'. The secret access key is shown only once, \
         now: store it; it cannot be shown again (delete the key and make another if it is lost).",
        output::render(&view_table(rows)),
        k.name,
        k.user,
        k.project
    ))
}

fn render_list(page: &Value) -> Result<String> {
    let mut table = list_table(&["NAME", "ACCESS KEY ID", "USER", "LAST USED", "CREATED"]);
    for k in output::items::<AccessKeyView>(page)? {
        table.add_row(vec![
            k.name,
            k.access_key_id,
            k.user,
            k.last_used.map_or_else(|| "never".into(), timestamp),
            timestamp(k.time_created),
        ]);
    }
    Ok(output::render(&table))
}

fn render_view(value: &Value) -> Result<String> {
    let k: AccessKeyView = output::view(value)?;
    let rows = vec![
        ("NAME", k.name),
        ("ID", k.id.to_string()),
        ("ACCESS KEY ID", k.access_key_id),
        ("PROJECT", k.project),
        ("USER", k.user),
        ("DESCRIPTION", or_dash(Some(&k.description))),
        ("LAST USED", k.last_used.map_or_else(|| "never".into(), timestamp)),
        ("CREATED", timestamp(k.time_created)),
    ];
    Ok(output::render(&view_table(rows)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::Client;
    use crate::output::OutputFormat;
    use crate::testserver::{Reply, TestServer};
    use serde_json::json;

    const SECRET: &str = "abcdefghijABCDEFGHIJ0123456789klmnopqrst";

    fn sample() -> Value {
        json!({
            "id": "0190b2a4-0000-7000-8000-00000000000b", "name": "backup", "description": "nightly",
            "time_created": "2026-11-01T10:00:00Z", "time_modified": "2026-11-01T10:00:00Z",
            "project": "shop", "user": "alice", "access_key_id": "KUMOABCDEFGHIJKLMNOP", "last_used": null
        })
    }

    fn created() -> Value {
        let mut v = sample();
        v["secret_access_key"] = json!(SECRET);
        v
    }

    #[test]
    fn create_shows_the_id_and_the_secret_once_with_a_warning() {
        let text = render_created(&created()).expect("render");
        let row = |field: &str| {
            text.lines()
                .find(|l| l.starts_with(field))
                .map(|l| l[field.len()..].trim().to_string())
                .unwrap_or_else(|| panic!("no {field} row: {text}"))
        };
        assert_eq!(row("ACCESS KEY ID"), "KUMOABCDEFGHIJKLMNOP");
        assert_eq!(row("SECRET ACCESS KEY"), SECRET);
        assert_eq!(text.matches(SECRET).count(), 1, "{text}");
        assert!(text.contains("shown only once"), "{text}");
    }

    #[test]
    fn list_and_view_show_no_secret() {
        let mut used = sample();
        used["name"] = json!("ci");
        used["last_used"] = json!("2026-11-02T08:30:00Z");
        let page = json!({"items": [sample(), used], "next_page": null});
        let text = render_list(&page).expect("render");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0].split_whitespace().collect::<Vec<_>>(),
            ["NAME", "ACCESS", "KEY", "ID", "USER", "LAST", "USED", "CREATED"]
        );
        let row: Vec<&str> = lines[1].split_whitespace().collect();
        assert_eq!(row, ["backup", "KUMOABCDEFGHIJKLMNOP", "alice", "never", "2026-11-01T10:00:00Z"], "{text}");
        assert!(lines[2].starts_with("ci ") && lines[2].contains("2026-11-02T08:30:00Z"), "{text}");
        // Even if an answer carried a secret, the list and view would not print it.
        let page = json!({"items": [created()], "next_page": null});
        assert!(!render_list(&page).expect("render").contains(SECRET));
        let view = render_view(&created()).expect("render");
        assert!(!view.contains(SECRET) && view.contains("nightly") && view.contains("KUMOABCDEFGHIJKLMNOP"), "{view}");
    }

    #[test]
    fn create_and_delete_send_the_project() {
        let server = TestServer::start(|r| match r.method.as_str() {
            "POST" => Reply::json(201, &created().to_string()),
            _ => Reply::empty(204),
        });
        let ctx = Ctx { client: Client::new(&server.url(), "t").expect("client"), output: OutputFormat::Json };
        let args = AccessKeyCreateArgs {
            name: Name::parse("backup").expect("name"),
            project: ProjectArg { project: "shop".into() },
            description: "nightly".into(),
        };
        run(&ctx, &AccessKeyCommand::Create(args)).expect("create");
        let r = AccessKeyRef { access_key: "backup".into(), project: ProjectArg { project: "shop".into() } };
        run(&ctx, &AccessKeyCommand::Delete(r)).expect("delete");
        let reqs = server.requests();
        assert_eq!(reqs.len(), 2);
        assert_eq!((reqs[0].method.as_str(), reqs[0].path.as_str()), ("POST", "/v1/access-keys"));
        assert_eq!(reqs[0].query_param("project").as_deref(), Some("shop"));
        let body: Value = serde_json::from_slice(&reqs[0].body).expect("json body");
        assert_eq!(body, json!({"name": "backup", "description": "nightly"}));
        assert_eq!((reqs[1].method.as_str(), reqs[1].path.as_str()), ("DELETE", "/v1/access-keys/backup"));
        assert_eq!(reqs[1].query_param("project").as_deref(), Some("shop"));
    }
}
