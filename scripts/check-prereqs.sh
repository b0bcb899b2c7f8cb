#!/bin/sh
# Fails loudly, naming what is missing, when a prerequisite of the whole test suite is absent.
# scripts/test.sh runs it after installing packages, so a missing package or service is a failure of
# the README's test command, never a test that silently skips (the tests themselves also refuse to
# skip when CI or KUMO_TEST_STRICT is set; scripts/test.sh sets KUMO_TEST_STRICT=1).
set -u
missing=""
need_cmd() { command -v "$1" >/dev/null 2>&1 || missing="$missing\n  - $1 ($2)"; }
need_file() { [ -e "$1" ] || missing="$missing\n  - $1 ($2)"; }

[ "$(id -u)" -eq 0 ] || missing="$missing\n  - root (the end-to-end tests create namespaces, taps and QEMU guests)"
need_cmd qemu-system-x86_64 "scripts/install-deps.sh"
need_cmd qemu-img "scripts/install-deps.sh"
need_cmd nft "scripts/install-deps.sh"
need_cmd ip "scripts/install-deps.sh"
need_cmd promtool "scripts/install-deps.sh --with-promtool"
need_file /usr/bin/chromium "scripts/install-deps.sh --with-browser"
need_file /usr/bin/chromedriver "scripts/install-deps.sh --with-browser"
need_cmd rclone "scripts/install-deps.sh --with-s3-clients"
need_cmd s3cmd "scripts/install-deps.sh --with-s3-clients"
need_file "${KUMO_S3_CLIENTS:-/var/cache/kumo/s3-clients}/bin/aws" "scripts/s3-clients.sh"
need_file "${KUMO_S3_CLIENTS:-/var/cache/kumo/s3-clients}/bin/python" "scripts/s3-clients.sh"
need_file /dev/net/tun "the kernel's tun device"
need_file /var/cache/kumo/images/tiny/manifest.json "images/tiny/build.sh"
[ -n "${KUMO_TEST_POSTGRES_URL:-}" ] || missing="$missing\n  - KUMO_TEST_POSTGRES_URL (scripts/postgres.sh prints it)"

if [ -n "$missing" ]; then
    printf 'check-prereqs: the test suite cannot run completely; missing:%b\n' "$missing" >&2
    exit 1
fi
echo "check-prereqs: every prerequisite is present"
