//! The audit log: what every mutating request did, who asked, and how it ended.
//!
//! The recording itself is the `http::audit` middleware (it sees every request, including the
//! ones authentication refuses); this module queries the log (operators, or a project's owners
//! for their project). Pruning past the retention is [`crate::background::audit_retention`].

use crate::context::{Access, OpContext};
use crate::error::{ApiError, ApiResult};
use crate::App;
use chrono::{DateTime, TimeDelta, Utc};
use kumo_store::audit::AuditFilter;
use kumo_types::page::PageRequest;
use kumo_types::{AuditEntryView, ResultsPage};

/// The query of `GET /v1/system/audit-log`, as given.
#[derive(Debug, Default, Clone)]
pub struct AuditQuery {
    pub since: Option<String>,
    pub until: Option<String>,
    pub user: Option<String>,
    pub project: Option<String>,
    pub operation: Option<String>,
}

/// Parses an RFC 3339 time or a duration back from `now`: `90s`, `30m`, `1h`, `7d`.
pub fn parse_time(s: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    let bad = || format!("'{s}' is neither an RFC 3339 time (2026-11-27T10:00:00Z) nor a duration like 30m, 1h, 7d");
    let split = s.len().checked_sub(1).ok_or_else(bad)?;
    let (n, unit) = s.split_at(split);
    let n: i64 = n.parse().map_err(|_| bad())?;
    let d = match unit {
        "s" => TimeDelta::try_seconds(n),
        "m" => TimeDelta::try_minutes(n),
        "h" => TimeDelta::try_hours(n),
        "d" => TimeDelta::try_days(n),
        _ => None,
    }
    .ok_or_else(bad)?;
    now.checked_sub_signed(d).ok_or_else(bad)
}

pub async fn list(
    app: &App,
    ctx: &OpContext,
    q: &AuditQuery,
    page: &PageRequest,
) -> ApiResult<ResultsPage<AuditEntryView>> {
    let mut conn = super::read(app).await?;
    let mut f = AuditFilter::default();
    // Operators see everything; a project's owners may see their project's entries.
    if !ctx.actor.operator || q.project.is_some() {
        if q.project.is_none() {
            ctx.authorize(Access::Operator)?;
        }
        let p = super::project(&mut conn, ctx, q.project.as_deref(), Access::Manage).await?;
        f.project_id = Some(p.id);
    }
    let now = Utc::now();
    let time = |s: &Option<String>, what: &str| {
        s.as_deref().map(|s| parse_time(s, now).map_err(|e| ApiError::invalid(format!("{what}: {e}")))).transpose()
    };
    f.since = time(&q.since, "since")?;
    f.until = time(&q.until, "until")?;
    f.operation = q.operation.clone();
    if let Some(u) = &q.user {
        let sel = super::selector("user", u)?;
        let user = kumo_store::users::get(&mut conn, &sel)
            .await?
            .ok_or_else(|| ApiError::invalid(format!("user '{u}' does not exist")))?;
        f.user_id = Some(user.id);
    }
    Ok(kumo_store::audit::list(&mut conn, &f, page).await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_takes_rfc3339_or_a_relative_duration() {
        let now = DateTime::parse_from_rfc3339("2026-11-27T12:00:00Z").unwrap().with_timezone(&Utc);
        let at = |s: &str| parse_time(s, now).map(|t| t.to_rfc3339());
        assert_eq!(at("1h").unwrap(), "2026-11-27T11:00:00+00:00");
        assert_eq!(at("30m").unwrap(), "2026-11-27T11:30:00+00:00");
        assert_eq!(at("7d").unwrap(), "2026-11-20T12:00:00+00:00");
        assert_eq!(at("2026-11-01T00:00:00Z").unwrap(), "2026-11-01T00:00:00+00:00");
        for bad in ["", "h", "1w", "-", "yesterday", "99999999999999d"] {
            assert!(parse_time(bad, now).is_err(), "{bad}");
        }
    }
}
