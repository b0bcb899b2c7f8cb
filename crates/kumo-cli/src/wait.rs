//! `--wait`: poll an instance until it reaches the resting state an action leads to.
//!
//! The API answers actions with 202 and the transitional state; the reconciler does the work.
//! Waiting means polling `GET /v1/instances/{name}` every 250 ms (with a spinner on a terminal)
//! until the target state, `failed` (its `state_reason` is the error), a different resting state
//! after a transitional one (the instance will not get there by itself), or the timeout.

use crate::client::Client;
use crate::json::Json;
use crate::output::view;
use anyhow::{bail, Result};
use indicatif::{ProgressBar, ProgressStyle};
use kumo_types::{InstanceState, InstanceView};
use std::io::IsTerminal;
use std::time::{Duration, Instant};

const POLL_INTERVAL: Duration = Duration::from_millis(250);

/// The `--wait` and `--timeout` options of instance actions.
#[derive(Debug, Clone, clap::Args)]
pub struct WaitArgs {
    /// Wait until the instance reaches the state this action leads to.
    #[arg(long)]
    pub wait: bool,
    /// With --wait: give up after this many seconds.
    #[arg(long, value_name = "SECS", default_value_t = 300, requires = "wait")]
    pub timeout: u64,
}

/// What an action is waiting for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    State(InstanceState),
    /// The instance no longer exists (GET answers 404).
    Gone,
}

impl Target {
    fn describe(self) -> &'static str {
        match self {
            Target::State(s) => s.as_str(),
            Target::Gone => "deleted",
        }
    }
}

/// What to do after seeing a state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Done,
    Continue,
    Fail(String),
}

/// Decides, from one observed state, whether waiting is over. `seen_transitional` is whether a
/// transitional state was already observed: only after one does a wrong resting state mean the
/// instance settled elsewhere (rather than the action not having been applied yet).
pub fn assess(target: Target, name: &str, state: InstanceState, reason: Option<&str>, seen_transitional: bool) -> Step {
    if Target::State(state) == target || (target == Target::Gone && state == InstanceState::Destroyed) {
        return Step::Done;
    }
    if state == InstanceState::Failed {
        let reason = reason.filter(|r| !r.is_empty()).unwrap_or("no reason given");
        return Step::Fail(format!("instance {name} failed: {reason}"));
    }
    if !state.is_transitional() && seen_transitional {
        let because = reason.map(|r| format!(" ({r})")).unwrap_or_default();
        return Step::Fail(format!(
            "instance {name} settled in state {state}{because} instead of {}",
            target.describe()
        ));
    }
    Step::Continue
}

/// Polls until `target`; returns the last view (`None` when the instance is gone).
pub fn wait_for_instance(
    client: &Client,
    project: &str,
    name: &str,
    target: Target,
    initial: Json,
    timeout: Duration,
) -> Result<Option<Json>> {
    let spinner = spinner();
    let deadline = Instant::now() + timeout;
    let mut current = initial;
    let mut seen_transitional = false;
    let outcome = loop {
        let instance: InstanceView = view(&current.to_value())?;
        seen_transitional |= instance.state.is_transitional();
        spinner.set_message(format!("instance {name}: {}", instance.state));
        match assess(target, name, instance.state, instance.state_reason.as_deref(), seen_transitional) {
            Step::Done => break Ok(Some(current)),
            Step::Fail(message) => break Err(anyhow::anyhow!(message)),
            Step::Continue => {}
        }
        if Instant::now() >= deadline {
            break Err(anyhow::anyhow!(
                "timed out after {}s waiting for instance {name} to be {} (it is {}); it may still get there: \
                 check with `kumo instance view {name} --project {project}`",
                timeout.as_secs(),
                target.describe(),
                instance.state
            ));
        }
        std::thread::sleep(POLL_INTERVAL);
        match client.get(&["instances", name], &[("project", project)]) {
            Ok(next) => current = next,
            Err(e) if e.is_not_found() && target == Target::Gone => break Ok(None),
            Err(e) if e.is_not_found() => break Err(anyhow::anyhow!("instance {name} disappeared while waiting: {e}")),
            Err(e) => break Err(e.into()),
        }
    };
    spinner.finish_and_clear();
    outcome
}

/// A spinner on stderr, or a hidden one when stderr is not a terminal.
pub(crate) fn spinner() -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new_spinner();
    if let Ok(style) = ProgressStyle::with_template("{spinner} {msg} ({elapsed})") {
        bar.set_style(style);
    }
    bar.enable_steady_tick(Duration::from_millis(100));
    bar
}

/// Waits for `target` if asked; whether the caller should print the result is decided there.
pub fn maybe_wait(
    client: &Client,
    project: &str,
    name: &str,
    target: Target,
    args: &WaitArgs,
    returned: Json,
) -> Result<Option<Json>> {
    if !args.wait {
        return Ok(Some(returned));
    }
    if args.timeout == 0 {
        bail!("--timeout must be at least 1 second");
    }
    wait_for_instance(client, project, name, target, returned, Duration::from_secs(args.timeout))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testserver::{Reply, TestServer};
    use InstanceState as S;

    const RUNNING: Target = Target::State(S::Running);

    #[test]
    fn reaching_the_target_ends_the_wait() {
        assert_eq!(assess(RUNNING, "w", S::Running, None, true), Step::Done);
        assert_eq!(assess(Target::State(S::Stopped), "w", S::Stopped, None, false), Step::Done);
        assert_eq!(assess(Target::Gone, "w", S::Destroyed, None, true), Step::Done);
    }

    #[test]
    fn transitional_states_keep_waiting() {
        for s in [S::Creating, S::Starting, S::Rebooting] {
            assert_eq!(assess(RUNNING, "w", s, None, true), Step::Continue);
        }
        assert_eq!(assess(Target::Gone, "w", S::Deleting, None, true), Step::Continue);
    }

    #[test]
    fn failure_reports_the_reason() {
        let step = assess(RUNNING, "web1", S::Failed, Some("qemu exited with status 1"), true);
        assert_eq!(step, Step::Fail("instance web1 failed: qemu exited with status 1".into()));
        assert!(matches!(assess(RUNNING, "w", S::Failed, None, false), Step::Fail(m) if m.contains("no reason")));
    }

    #[test]
    fn a_wrong_resting_state_fails_only_after_a_transition() {
        // The action may not be visible yet: keep polling.
        assert_eq!(assess(RUNNING, "w", S::Stopped, None, false), Step::Continue);
        // It was starting and is now stopped: the guest powered off, it will not get to running.
        let step = assess(RUNNING, "w", S::Stopped, None, true);
        assert!(matches!(&step, Step::Fail(m) if m.contains("stopped") && m.contains("running")), "{step:?}");
    }

    fn instance(state: &str, reason: Option<&str>) -> Json {
        let value = serde_json::json!({
            "id": "0190b2a4-0000-7000-8000-000000000004", "name": "web1", "description": "",
            "time_created": "2024-05-01T10:00:00Z", "time_modified": "2024-05-01T10:00:00Z",
            "project": "demo", "state": state, "state_reason": reason, "image": "tiny",
            "instance_type": "small", "vcpus": 1, "memory_mib": 512, "disk_gib": 10, "host": null
        });
        Json::parse(&value.to_string()).expect("valid JSON")
    }

    /// A server whose instance goes through `states`, one per GET, then stays in the last one;
    /// `None` answers 404.
    fn server_going_through(states: Vec<Option<&'static str>>) -> TestServer {
        let served = std::sync::atomic::AtomicUsize::new(0);
        TestServer::start(move |req| {
            assert_eq!(req.path, "/v1/instances/web1");
            assert_eq!(req.query_param("project").as_deref(), Some("demo"));
            let i = served.fetch_add(1, std::sync::atomic::Ordering::SeqCst).min(states.len() - 1);
            match states[i] {
                Some(state) => Reply::json(200, &instance(state, Some("qemu exited")).to_value().to_string()),
                None => Reply::json(404, r#"{"request_id":"r","error_code":"NotFound","message":"gone"}"#),
            }
        })
    }

    fn client(server: &TestServer) -> Client {
        Client::new(&server.url(), "t").expect("client")
    }

    const LONG: Duration = Duration::from_secs(30);

    #[test]
    fn polls_until_running() {
        let server = server_going_through(vec![Some("creating"), Some("starting"), Some("running")]);
        let last = wait_for_instance(&client(&server), "demo", "web1", RUNNING, instance("creating", None), LONG)
            .expect("wait")
            .expect("a view");
        assert_eq!(last.get("state").and_then(Json::as_str), Some("running"));
        assert_eq!(server.requests().len(), 3);
    }

    #[test]
    fn delete_waits_for_404() {
        let server = server_going_through(vec![Some("deleting"), None]);
        let gone = wait_for_instance(&client(&server), "demo", "web1", Target::Gone, instance("deleting", None), LONG)
            .expect("wait");
        assert!(gone.is_none());
    }

    #[test]
    fn failure_and_timeout_are_errors() {
        let server = server_going_through(vec![Some("failed")]);
        let err = wait_for_instance(&client(&server), "demo", "web1", RUNNING, instance("starting", None), LONG)
            .expect_err("failed");
        assert_eq!(err.to_string(), "instance web1 failed: qemu exited");

        let server = server_going_through(vec![Some("starting")]);
        let short = Duration::from_millis(600);
        let err = wait_for_instance(&client(&server), "demo", "web1", RUNNING, instance("starting", None), short)
            .expect_err("timeout");
        assert!(err.to_string().contains("timed out") && err.to_string().contains("starting"), "{err}");
    }

    #[test]
    fn timeout_requires_wait() {
        use clap::Parser;
        #[derive(Debug, clap::Parser)]
        struct T {
            #[command(flatten)]
            wait: WaitArgs,
        }
        let t = T::try_parse_from(["t", "--wait", "--timeout", "5"]).expect("parse");
        assert!(t.wait.wait);
        assert_eq!(t.wait.timeout, 5);
        assert_eq!(T::try_parse_from(["t"]).expect("parse").wait.timeout, 300);
        assert!(T::try_parse_from(["t", "--timeout", "5"]).is_err());
    }
}
