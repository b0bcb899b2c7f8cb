#!/bin/bash
# By-hand proof that the debian-12 image boots under TCG and that cloud-init in it applies an
# OpenStack config drive: hostname, SSH key (login as the default user) and user-data.
#
#   images/debian/smoke.sh [--vfat] [--no-smbios] [--no-network-data] [--keep] [IMAGE_DIR]
#
# IMAGE_DIR defaults to /var/cache/kumo/images/debian-12 (images/debian/build.sh's output).
#   --vfat             config drive as a vfat filesystem labelled CONFIG-2 instead of ISO 9660 config-2
#   --no-smbios        no "OpenStack Nova" SMBIOS strings (does ds-identify still find the drive?)
#   --no-network-data  no openstack/latest/network_data.json (cloud-init's fallback: DHCP on the NIC)
#   --keep             keep the work directory (serial log, dnsmasq log) for inspection
#
# Runs as root.  Everything networked happens inside a network namespace this script makes and
# deletes (bridge + tap + dnsmasq as DHCP server, guest at 10.77.0.10); the root namespace's
# network is never touched.  QEMU, dnsmasq and the namespace are removed on every exit path.
# Exits 0 only if every check passed; prints "N passed, N failed".
# Env: KUMO_SMOKE_TIMEOUT (s to wait for SSH, default 900), KUMO_SMOKE_MEMORY_MIB (default 1024).
set -euo pipefail
export LC_ALL=C

VFAT=0 SMBIOS=1 NETDATA=1 KEEP=0
IMG=/var/cache/kumo/images/debian-12
for arg in "$@"; do
    case "$arg" in
        --vfat) VFAT=1 ;;
        --no-smbios) SMBIOS=0 ;;
        --no-network-data) NETDATA=0 ;;
        --keep) KEEP=1 ;;
        -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
        -*) echo "smoke: unknown option $arg" >&2; exit 2 ;;
        *) IMG=$arg ;;
    esac
done
BOOT_TIMEOUT=${KUMO_SMOKE_TIMEOUT:-900}
MEMORY_MIB=${KUMO_SMOKE_MEMORY_MIB:-1024}
NS=kumo-dsmoke-$$
MAC=52:54:00:4b:75:6d
HOST_IP=10.77.0.1
GUEST_IP=10.77.0.10
GUEST_HOSTNAME=kumo-smoke-$$
INSTANCE_UUID=$(cat /proc/sys/kernel/random/uuid)
MARKER="written by user-data for $INSTANCE_UUID"
MARKER_FILE=/var/lib/kumo-smoke.txt

say() { echo "smoke: $*" >&2; }
die() { say "error: $*"; exit 1; }
[ "$(id -u)" -eq 0 ] || die "must run as root"
[ -f "$IMG/disk.qcow2" ] || die "$IMG/disk.qcow2 missing: run images/debian/build.sh first"
for tool in qemu-system-x86_64 qemu-img ip dnsmasq ssh ssh-keygen xorriso mkfs.vfat mcopy; do
    command -v "$tool" >/dev/null || die "$tool not found (run scripts/install-deps.sh)"
done

T=$(mktemp -d /tmp/kumo-debian-smoke.XXXXXX)
QEMU_PID="" DNSMASQ_PID=""
cleanup() {
    local pid
    # The PIDs we started, and those their pid files name (the same, unless a wrapper forked).
    QEMU_PID="$QEMU_PID $(cat "$T/qemu.pid" 2>/dev/null || true)"
    DNSMASQ_PID="$DNSMASQ_PID $(cat "$T/dnsmasq.pid" 2>/dev/null || true)"
    for pid in $QEMU_PID $DNSMASQ_PID; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in $QEMU_PID $DNSMASQ_PID; do
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$pid" 2>/dev/null || true
    done
    ip netns del "$NS" 2>/dev/null || true
    if [ "$KEEP" = 1 ]; then say "kept $T"; else rm -rf "$T"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP
in_ns() { ip netns exec "$NS" "$@"; }

# ------------------------------------------------------------- config drive --
ssh-keygen -q -t ed25519 -N '' -C kumo-smoke -f "$T/key"
CD=$T/cd
mkdir -p "$CD/openstack/latest"
cat >"$CD/openstack/latest/meta_data.json" <<EOF
{"uuid":"$INSTANCE_UUID","name":"$GUEST_HOSTNAME","hostname":"$GUEST_HOSTNAME","availability_zone":"kumo","launch_index":0,"project_id":"00000000000000000000000000000000","public_keys":{"smoke":"$(cat "$T/key.pub")"},"keys":[{"name":"smoke","type":"ssh","data":"$(cat "$T/key.pub")"}],"meta":{},"files":[]}
EOF
cat >"$CD/openstack/latest/user_data" <<EOF
#cloud-config
write_files:
  - path: $MARKER_FILE
    permissions: '0644'
    content: |
      $MARKER
EOF
if [ "$NETDATA" = 1 ]; then
    cat >"$CD/openstack/latest/network_data.json" <<EOF
{"links":[{"id":"tap0","type":"phy","ethernet_mac_address":"$MAC","mtu":1500,"vif_id":"$INSTANCE_UUID"}],"networks":[{"id":"network0","type":"ipv4_dhcp","link":"tap0","network_id":"$INSTANCE_UUID"}],"services":[]}
EOF
fi
if [ "$VFAT" = 1 ]; then
    DRIVE=$T/config.vfat
    mkfs.vfat -n CONFIG-2 -C "$DRIVE" 8192 >/dev/null
    MTOOLS_SKIP_CHECK=1 mcopy -s -i "$DRIVE" "$CD/openstack" ::/
    DRIVE_KIND="vfat CONFIG-2"
else
    DRIVE=$T/config.iso
    xorriso -as mkisofs -quiet -V config-2 -J -R -o "$DRIVE" "$CD"
    DRIVE_KIND="iso9660 config-2"
fi
qemu-img create -q -f qcow2 -F qcow2 -b "$(realpath "$IMG/disk.qcow2")" "$T/root.qcow2" 4G

# ---------------------------------------------------------------- netns --
ip netns add "$NS"
in_ns ip link set lo up
in_ns ip link add br0 type bridge
in_ns ip addr add "$HOST_IP/24" dev br0
in_ns ip link set br0 up
in_ns ip tuntap add dev tap0 mode tap
in_ns ip link set tap0 master br0
in_ns ip link set tap0 up
# Not through in_ns: `func &` would fork a subshell, and $! would be that subshell, not dnsmasq.
ip netns exec "$NS" dnsmasq --keep-in-foreground --conf-file=/dev/null --port=0 --interface=br0 --bind-interfaces \
    --dhcp-range=10.77.0.50,10.77.0.99,1h --dhcp-host="$MAC,$GUEST_IP" \
    --dhcp-leasefile="$T/leases" --pid-file="$T/dnsmasq.pid" --log-dhcp --log-facility="$T/dnsmasq.log" &
DNSMASQ_PID=$!

# ------------------------------------------------------------------ boot --
SMBIOS_ARGS=()
[ "$SMBIOS" = 0 ] || SMBIOS_ARGS=(-smbios "type=1,manufacturer=OpenStack Foundation,product=OpenStack Nova,serial=$INSTANCE_UUID,uuid=$INSTANCE_UUID")
say "booting $IMG under TCG: config drive $DRIVE_KIND, SMBIOS $([ "$SMBIOS" = 1 ] && echo OpenStack || echo none), network_data.json $([ "$NETDATA" = 1 ] && echo yes || echo no)"
START=$(date +%s.%N)
ip netns exec "$NS" qemu-system-x86_64 -accel tcg -m "$MEMORY_MIB" -smp 2 -nographic -monitor none \
    -serial "file:$T/serial.log" -pidfile "$T/qemu.pid" \
    "${SMBIOS_ARGS[@]}" \
    -drive "file=$T/root.qcow2,if=virtio,format=qcow2" \
    -drive "file=$DRIVE,if=virtio,format=raw,readonly=on" \
    -netdev tap,id=n0,ifname=tap0,script=no,downscript=no \
    -device "virtio-net-pci,netdev=n0,mac=$MAC" </dev/null >"$T/qemu.out" 2>&1 &
QEMU_PID=$!

SSH=(ssh -i "$T/key" -o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null
    -o LogLevel=ERROR -o ConnectTimeout=5 "debian@$GUEST_IP")
elapsed() { echo "$(date +%s.%N) $START" | awk '{printf "%.1f", $1 - $2}'; }
SSH_AT=""
while :; do
    kill -0 "$QEMU_PID" 2>/dev/null || { cat "$T/qemu.out" >&2; tail -n 30 "$T/serial.log" >&2; die "QEMU exited"; }
    if in_ns "${SSH[@]}" true 2>/dev/null; then SSH_AT=$(elapsed); break; fi
    if awk -v e="$(elapsed)" -v t="$BOOT_TIMEOUT" 'BEGIN {exit !(e > t)}'; then
        tail -n 40 "$T/serial.log" >&2
        die "no SSH after ${BOOT_TIMEOUT}s"
    fi
    sleep 3
done
say "SSH answered $SSH_AT s after QEMU started"
# Wait for cloud-init's final stage (user-data modules) before reading its results.
in_ns "${SSH[@]}" 'timeout 600 cloud-init status --wait >/dev/null 2>&1 || true'
DONE_AT=$(elapsed)
in_ns "${SSH[@]}" "set -x; hostname; id; cat /run/cloud-init/result.json; cat $MARKER_FILE; cloud-init status --long; \
    cat /run/cloud-init/cloud.cfg; sudo grep -E '^(DMI_PRODUCT_NAME|DMI_SYS_VENDOR|FS_LABELS|ISO9660_DEVS|DSLIST|MODE|found|Found)' /run/cloud-init/ds-identify.log; \
    ip -br addr; df -h /; systemd-analyze || true" >"$T/guest.txt" 2>&1 || true
cat "$T/guest.txt"
FIRST_LINE=$(grep -m1 -E 'Linux version' "$T/serial.log" || true)

# ---------------------------------------------------------------- checks --
PASS=0 FAIL=0
check() { # check DESCRIPTION COMMAND...
    local what=$1; shift
    if "$@" >/dev/null 2>&1; then PASS=$((PASS + 1)); echo "ok   $what"; else FAIL=$((FAIL + 1)); echo "FAIL $what"; fi
}
check "login as debian with the config drive's key" true
check "hostname is $GUEST_HOSTNAME" grep -qx "$GUEST_HOSTNAME" "$T/guest.txt"
check "user-data wrote $MARKER_FILE" grep -qF "$MARKER" "$T/guest.txt"
check "datasource is ConfigDrive" grep -q 'DataSourceConfigDrive' "$T/guest.txt"
check "cloud-init status: done" grep -qE '^status: done' "$T/guest.txt"
check "cloud-init reported no errors" grep -qE '"errors": \[\]' "$T/guest.txt"
check "root filesystem grown to the 4G disk" grep -qE '^/dev/vda1 +3\.[0-9]G' "$T/guest.txt"
check "boot messages on the serial port" test -n "$FIRST_LINE"
echo "figures: memory=${MEMORY_MIB}MiB ssh_after=${SSH_AT}s cloud_init_done_after=${DONE_AT}s drive=\"$DRIVE_KIND\" smbios=$SMBIOS network_data=$NETDATA"
echo "$PASS passed, $FAIL failed"
[ "$FAIL" -eq 0 ]
