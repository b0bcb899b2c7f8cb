#!/bin/sh
# The S3 clients of the object storage tests that Debian does not package in a current version:
# the aws CLI (v1, the one on PyPI) and boto3, pinned, in a venv of their own (Debian's python3;
# scripts/install-deps.sh --with-s3-clients installs python3-venv, rclone and s3cmd).
#
#   scripts/s3-clients.sh [DIR]      (default /var/cache/kumo/s3-clients; prints DIR)
#
# Idempotent: a no-op when DIR holds these versions. Both default, as their current releases do, to
# CRC32 checksums sent as aws-chunked trailers on uploads: what the endpoint must verify.
set -eu
DIR=${1:-/var/cache/kumo/s3-clients}
AWSCLI=1.46.3
BOTO3=1.44.8
stamp="$DIR/.versions"
want="awscli==$AWSCLI boto3==$BOTO3"
if [ -x "$DIR/bin/aws" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
    echo "$DIR"
    exit 0
fi
rm -rf "$DIR"
/usr/bin/python3 -m venv "$DIR" >&2
# shellcheck disable=SC2086
"$DIR/bin/pip" install --quiet --disable-pip-version-check $want >&2
echo "$want" >"$stamp"
echo "$DIR"
