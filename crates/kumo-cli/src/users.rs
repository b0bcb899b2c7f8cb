//! `kumo user …`: users (operators), and reading a password without showing it.

use crate::cli::{parse_name, ListArgs};
use crate::output::{self, age, list_table, or_dash, time_with_age, view_table};
use crate::Ctx;
use anyhow::{bail, Context, Result};
use chrono::Utc;
use clap::{Args, Subcommand};
use kumo_types::{Name, UserCreate, UserView};
use serde_json::Value;
use std::io::BufRead;

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// List users
    List(ListArgs),
    /// Create a user (asks for the password, or reads it from stdin)
    Create(UserCreateArgs),
    /// Show one user
    View {
        /// User name or id
        user: String,
    },
    /// Delete a user; their tokens and sessions stop working at once
    Delete {
        /// User name or id
        user: String,
    },
}

#[derive(Debug, Args)]
pub struct UserCreateArgs {
    /// Login name of the new user
    #[arg(value_parser = parse_name)]
    pub name: Name,
    /// Read the password from the first line of standard input (for scripts)
    #[arg(long)]
    pub password_stdin: bool,
    /// Make the user a cloud operator (global admin)
    #[arg(long)]
    pub operator: bool,
    /// Free-form description
    #[arg(long, default_value = "")]
    pub description: String,
}

/// The first line of `input`, without its line ending.
pub fn password_from(input: &mut dyn BufRead) -> Result<String> {
    let mut line = String::new();
    input.read_line(&mut line).context("reading the password from standard input")?;
    let password = line.trim_end_matches(['\n', '\r']).to_string();
    if password.is_empty() {
        bail!("no password on standard input");
    }
    Ok(password)
}

/// A password from stdin (`--password-stdin`) or typed at a prompt without echo.
pub fn read_password(from_stdin: bool, prompt: &str, confirm: bool) -> Result<String> {
    if from_stdin {
        return password_from(&mut std::io::stdin().lock());
    }
    let password =
        rpassword::prompt_password(prompt).context("reading the password (use --password-stdin in scripts)")?;
    if confirm {
        let again = rpassword::prompt_password("Again: ").context("reading the password")?;
        if again != password {
            bail!("the passwords differ");
        }
    }
    Ok(password)
}

pub fn run(ctx: &Ctx, command: &UserCommand) -> Result<()> {
    match command {
        UserCommand::List(list) => {
            let page = ctx.client.list_all(&["users"], &[], list.cap())?;
            ctx.show(&page, render_list)
        }
        UserCommand::Create(args) => {
            let password = read_password(args.password_stdin, &format!("Password for {}: ", args.name), true)?;
            let body = UserCreate {
                name: args.name.clone(),
                password,
                description: args.description.clone(),
                operator: args.operator,
            };
            let created = ctx.client.post(&["users"], &[], Some(&body))?;
            ctx.show(&created, render_view)
        }
        UserCommand::View { user } => {
            let found = ctx.client.get(&["users", user], &[])?;
            ctx.show(&found, render_view)
        }
        UserCommand::Delete { user } => {
            ctx.client.delete(&["users", user], &[])?;
            ctx.done(&format!("deleted user {user}; their tokens are revoked"));
            Ok(())
        }
    }
}

fn kind(operator: bool) -> String {
    if operator { "operator" } else { "user" }.to_string()
}

fn render_list(page: &Value) -> Result<String> {
    let now = Utc::now();
    let mut table = list_table(&["NAME", "KIND", "DESCRIPTION", "AGE"]);
    for u in output::items::<UserView>(page)? {
        table.add_row(vec![u.name, kind(u.operator), or_dash(Some(&u.description)), age(u.time_created, now)]);
    }
    Ok(output::render(&table))
}

fn render_view(value: &Value) -> Result<String> {
    let u: UserView = output::view(value)?;
    let now = Utc::now();
    let table = view_table(vec![
        ("NAME", u.name),
        ("ID", u.id.to_string()),
        ("KIND", kind(u.operator)),
        ("DESCRIPTION", or_dash(Some(&u.description))),
        ("CREATED", time_with_age(u.time_created, now)),
        ("MODIFIED", time_with_age(u.time_modified, now)),
    ]);
    Ok(output::render(&table))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_password_is_the_first_line_of_stdin() {
        assert_eq!(password_from(&mut "s3cret pw\nrest\n".as_bytes()).unwrap(), "s3cret pw");
        assert_eq!(password_from(&mut "crlf-pass\r\n".as_bytes()).unwrap(), "crlf-pass");
        assert_eq!(password_from(&mut "  spaces kept ".as_bytes()).unwrap(), "  spaces kept ");
        assert!(password_from(&mut "".as_bytes()).is_err());
        assert!(password_from(&mut "\n".as_bytes()).is_err());
    }

    #[test]
    fn renders_users() {
        let page = json!({"items": [{"id": "0190b2a4-0000-7000-8000-000000000001", "name": "alice", "description": "",
            "time_created": "2026-11-01T10:00:00Z", "time_modified": "2026-11-01T10:00:00Z", "operator": true}],
            "next_page": null});
        let text = render_list(&page).unwrap();
        assert!(text.lines().nth(1).is_some_and(|l| l.starts_with("alice") && l.contains("operator")), "{text}");
    }
}
