#!/bin/sh
# Install the system packages Kumo needs (Debian 12, run as root).
#
#   scripts/install-deps.sh [--with-postgres] [--with-promtool] [--with-browser] [--with-s3-clients]
#
# --with-promtool adds Debian's `prometheus` package for `promtool check metrics` (tests of /metrics).
# --with-browser adds headless Chromium and its WebDriver (the dashboard's browser tests).
# --with-s3-clients adds Debian's rclone and s3cmd and Python's venv, for the S3 endpoint's tests
# (scripts/s3-clients.sh then puts the aws CLI and boto3 from PyPI in a venv of their own).
#
# Idempotent: a fast no-op (no apt-get update) when everything is present.
set -eu

PKGS="qemu-system-x86 qemu-utils busybox-static cpio e2fsprogs kmod gzip socat iproute2 nftables curl"
# images/debian/build.sh (debootstrap, GRUB for SeaBIOS, sfdisk) and its smoke.sh (config drives as
# ISO 9660 or vfat, a DHCP server in a netns, ssh into the guest).
PKGS="$PKGS debootstrap grub-pc-bin fdisk xorriso dosfstools mtools dnsmasq-base openssh-client"
# kumo-bench's raw side (a metadata service in its namespace: python3 -m http.server).
PKGS="$PKGS python3"

for arg in "$@"; do
    case "$arg" in
        --with-postgres) PKGS="$PKGS postgresql" ;;
        --with-promtool) PKGS="$PKGS prometheus" ;;
        --with-browser) PKGS="$PKGS chromium chromium-driver" ;;
        --with-s3-clients) PKGS="$PKGS rclone s3cmd python3-venv" ;;
        -h|--help) echo "usage: $0 [--with-postgres] [--with-promtool] [--with-browser] [--with-s3-clients]"; exit 0 ;;
        *) echo "install-deps: unknown argument: $arg" >&2; exit 2 ;;
    esac
done

if [ "$(id -u)" -ne 0 ]; then
    echo "install-deps: must run as root" >&2
    exit 1
fi

installed() {
    [ "$(dpkg-query -W -f='${db:Status-Abbrev}' "$1" 2>/dev/null)" = "ii " ]
}

missing=""
for p in $PKGS; do
    installed "$p" || missing="$missing $p"
done

if [ -z "$missing" ]; then
    echo "install-deps: all packages present: $PKGS"
    exit 0
fi

echo "install-deps: installing:$missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q

extra=""
case " $missing " in
    *" qemu-system-x86 "*|*" qemu-utils "*)
        # qemu-system-x86 and qemu-utils must come from the same QEMU release
        # (qemu-utils >= 8 Breaks qemu-system-common 7.2).  Some images ship a
        # newer backported qemu-utils; pin it to qemu-system-x86's version so
        # apt downgrades it instead of refusing / removing it.
        if installed qemu-system-x86; then
            cand=$(dpkg-query -W -f='${Version}' qemu-system-x86)
        else
            cand=$(apt-cache policy qemu-system-x86 | awk '/Candidate:/ {print $2}')
        fi
        have=$(dpkg-query -W -f='${Version}' qemu-utils 2>/dev/null || true)
        if [ -n "$cand" ] && [ "$cand" != "(none)" ] && [ "$have" != "$cand" ]; then
            missing=$(echo "$missing" | sed 's/ qemu-utils\b//')
            extra="qemu-utils=$cand"
            [ -n "$have" ] && echo "install-deps: qemu-utils $have -> $cand (to match qemu-system-x86)"
        fi
        ;;
esac

# shellcheck disable=SC2086
apt-get install -y -q --no-install-recommends --allow-downgrades \
    -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
    $missing $extra

for p in $PKGS; do
    installed "$p" || { echo "install-deps: $p still not installed" >&2; exit 1; }
done
echo "install-deps: done"
