//! The README's test command fails loudly when a prerequisite is missing (it never lets the
//! end-to-end, browser, nft or PostgreSQL tests skip and pass).

use std::path::Path;
use std::process::Command;

fn check_prereqs(path_env: &str, postgres_url: Option<&str>) -> std::process::Output {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/check-prereqs.sh");
    let mut cmd = Command::new("/bin/sh");
    cmd.arg(&script).env("PATH", path_env).env_remove("KUMO_TEST_POSTGRES_URL");
    if let Some(url) = postgres_url {
        cmd.env("KUMO_TEST_POSTGRES_URL", url);
    }
    cmd.output().expect("run scripts/check-prereqs.sh")
}

#[test]
fn a_missing_prerequisite_fails_the_test_command_and_names_it() {
    // A PATH without any tool and no PostgreSQL URL: every tool and the URL are named.
    let out = check_prereqs("/nonexistent", None);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "check-prereqs passed with nothing on PATH: {stderr}");
    for needed in ["qemu-system-x86_64", "nft", "promtool", "KUMO_TEST_POSTGRES_URL"] {
        assert!(stderr.contains(needed), "the message does not name {needed}: {stderr}");
    }
}

#[test]
fn the_test_script_makes_every_test_strict() {
    let script = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/test.sh"))
        .expect("read scripts/test.sh");
    assert!(script.contains("export KUMO_TEST_STRICT=1"), "scripts/test.sh must export KUMO_TEST_STRICT=1");
    assert!(script.contains("scripts/check-prereqs.sh"), "scripts/test.sh must run scripts/check-prereqs.sh");
}
