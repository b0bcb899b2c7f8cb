#!/bin/bash
# Runs the whole Kumo test suite (Debian 12, as root): installs what the tests need (QEMU,
# PostgreSQL, …), builds the tiny guest image, starts PostgreSQL for the store tests, then
# formatting, lints, and every test of the workspace (unit, API on the simulated hypervisor,
# store on SQLite and PostgreSQL, end-to-end on real QEMU).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh --with-postgres --with-promtool --with-browser
images/tiny/build.sh
KUMO_TEST_POSTGRES_URL=$(scripts/postgres.sh | tail -n 1)
export KUMO_TEST_POSTGRES_URL
# Every test whose prerequisite is missing fails instead of skipping (they skip only when a developer
# runs one test binary by hand without this set).
export KUMO_TEST_STRICT=1
scripts/check-prereqs.sh

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --locked --workspace --all-targets -- -D warnings
echo "== build"
# The end-to-end tests drive the `kumo` CLI binary: build every binary first.
cargo build --locked --workspace --bins
echo "== tests"
# A hung test must fail the run with its name in the log, not run into the CI's wall-clock limit.
rc=0
timeout --kill-after=30s "${KUMO_TEST_TIMEOUT:-50m}" cargo test --locked --workspace || rc=$?
if [ "$rc" -eq 124 ]; then
    echo "test.sh: the tests did not finish within ${KUMO_TEST_TIMEOUT:-50m}; the last 'Running' line names the binary" >&2
fi
exit "$rc"
