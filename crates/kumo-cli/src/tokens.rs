//! `kumo token …`: your API tokens (for CI and scripts). The secret is printed once, at creation.

use crate::cli::parse_name;
use crate::output::{self, list_table, timestamp};
use crate::Ctx;
use anyhow::Result;
use clap::Subcommand;
use kumo_types::{Name, TokenCreate, TokenCreated, TokenView};
use serde_json::Value;

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create an API token and print its secret (shown only this once)
    Create {
        /// Name of the token, unique among yours
        #[arg(value_parser = parse_name)]
        name: Name,
        /// Lifetime: days (30 or 30d), weeks (4w) or years (1y); default: no expiry
        #[arg(long, value_name = "DURATION", value_parser = parse_expiry)]
        expires: Option<u32>,
    },
    /// List your API tokens (never their secrets)
    List,
    /// Revoke one of your API tokens; it stops working at once
    Delete {
        /// Name of the token
        name: String,
    },
}

/// `30`, `30d`, `4w`, `1y` → days.
pub fn parse_expiry(s: &str) -> Result<u32, String> {
    let bad = || format!("'{s}' is not a lifetime like 30d, 4w or 1y");
    let (n, per) = match s.char_indices().last() {
        Some((i, 'd')) => (&s[..i], 1),
        Some((i, 'w')) => (&s[..i], 7),
        Some((i, 'y')) => (&s[..i], 365),
        _ => (s, 1),
    };
    let n: u32 = n.parse().map_err(|_| bad())?;
    let days = n.checked_mul(per).ok_or_else(bad)?;
    if days == 0 {
        return Err("the lifetime must be at least one day (leave --expires out for no expiry)".into());
    }
    Ok(days)
}

pub fn run(ctx: &Ctx, command: &TokenCommand) -> Result<()> {
    match command {
        TokenCommand::Create { name, expires } => {
            let body = TokenCreate { name: name.clone(), expires_in_days: *expires };
            let created = ctx.client.post(&["me", "tokens"], &[], Some(&body))?;
            ctx.show(&created, render_created)
        }
        TokenCommand::List => {
            let found = ctx.client.get(&["me", "tokens"], &[])?;
            ctx.show(&found, render_list)
        }
        TokenCommand::Delete { name } => {
            ctx.client.delete(&["me", "tokens", name], &[])?;
            ctx.done(&format!("revoked token {name}"));
            Ok(())
        }
    }
}

fn render_created(value: &Value) -> Result<String> {
    let t: TokenCreated = output::view(value)?;
    let expires = t.expires_at.map_or_else(|| "never".to_string(), timestamp);
    Ok(format!(
        "{}\n\ntoken '{}' (expires: {expires}). This is the only time the secret is shown; store it now.",
        t.token, t.name
    ))
}

fn render_list(value: &Value) -> Result<String> {
    let tokens: Vec<TokenView> = output::view(value)?;
    let mut table = list_table(&["NAME", "CREATED", "EXPIRES", "LAST USED"]);
    for t in tokens {
        table.add_row(vec![
            t.name,
            timestamp(t.time_created),
            t.expires_at.map_or_else(|| "never".into(), timestamp),
            t.last_used.map_or_else(|| "-".into(), timestamp),
        ]);
    }
    Ok(output::render(&table))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifetimes_parse_to_days() {
        assert_eq!(parse_expiry("30d"), Ok(30));
        assert_eq!(parse_expiry("30"), Ok(30));
        assert_eq!(parse_expiry("4w"), Ok(28));
        assert_eq!(parse_expiry("1y"), Ok(365));
        for bad in ["", "d", "0d", "-1d", "12h", "1.5d", "99999999999y"] {
            assert!(parse_expiry(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_secret_is_printed_first_and_alone_on_its_line() {
        let v = serde_json::json!({"name": "ci", "token": "kumo_abc", "expires_at": null});
        let text = render_created(&v).unwrap();
        assert_eq!(text.lines().next(), Some("kumo_abc"));
        assert!(text.contains("never"), "{text}");
    }
}
