#!/bin/bash
# Build Kumo's public "debian-12" image from Debian 12 (bookworm) packages only:
#   debootstrap --variant=minbase + linux-image-cloud-amd64 + cloud-init + openssh-server
#   + systemd-networkd (DHCP) + systemd-resolved, booted by GRUB (i386-pc, from the host's
#   grub-pc-bin) from an MBR-partitioned disk, so QEMU's default firmware (SeaBIOS) boots it.
#
#   images/debian/build.sh [OUT_DIR]     (default /var/cache/kumo/images/debian-12)
#
# Produces OUT_DIR/{disk.qcow2,manifest.json} (no kernel/initrd: firmware boot from the disk).
# Cached like images/tiny: exits at once if OUT_DIR/manifest.json has the current recipe_hash
# (sha256 over build.sh).  Builds in temp dirs and renames the result into place, so a
# half-built image is never visible.  Needs no loop device: the root filesystem is made from a
# directory (mkfs.ext4 -d) and written into the partitioned raw disk with dd.  Runs as root
# (debootstrap, chroot); needs what scripts/install-deps.sh installs.
set -euo pipefail
export LC_ALL=C

OUT=${1:-/var/cache/kumo/images/debian-12}
DEBS=${KUMO_DEB_CACHE:-/var/cache/kumo/debs}/debian-12
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
NAME=debian-12
SUITE=bookworm
DISK_MIB=2048          # virtual size of the image's disk (= smallest root disk an instance may have)
PART_START_MIB=1       # partition 1 starts at 1 MiB: sectors 1..2047 hold GRUB's core.img
DEFAULT_USER=debian
MIN_MEMORY_MIB=512     # advertised in the manifest (k1-nano's 128 MiB cannot run it)
CMDLINE_EXTRA="console=tty0 console=ttyS0,115200n8"
# Installed with apt (no recommends) on top of minbase.
PKGS="systemd-sysv udev dbus linux-image-cloud-amd64 initramfs-tools cloud-init cloud-guest-utils
openssh-server openssh-sftp-server sudo systemd-resolved isc-dhcp-client iproute2 netbase
ca-certificates procps less fdisk gdisk e2fsprogs locales python3-netifaces"
# GRUB modules built into core.img (the rest are copied to /boot/grub/i386-pc).
GRUB_MODULES="biosdisk part_msdos ext2 normal linux search search_fs_uuid serial terminal echo test
configfile boot gzio"

say() { echo "build-debian: $*" >&2; }
die() { say "error: $*"; exit 1; }

OUT=$(realpath -m "$OUT")
RECIPE_HASH=$(cd "$HERE" && sha256sum build.sh | sha256sum | cut -d' ' -f1)

is_cached() {
    [ -f "$OUT/manifest.json" ] &&
        grep -q "\"recipe_hash\":\"$RECIPE_HASH\"" "$OUT/manifest.json" &&
        [ -f "$OUT/disk.qcow2" ]
}

if is_cached; then
    say "up to date: $OUT (recipe $RECIPE_HASH)"
    exit 0
fi

[ "$(id -u)" -eq 0 ] || die "must run as root"
for tool in debootstrap chroot mkfs.ext4 sfdisk qemu-img grub-mkimage sha256sum flock mountpoint; do
    command -v "$tool" >/dev/null || die "$tool not found (run scripts/install-deps.sh)"
done
GRUB_LIB=/usr/lib/grub/i386-pc
[ -f "$GRUB_LIB/boot.img" ] || die "$GRUB_LIB/boot.img missing (install grub-pc-bin: scripts/install-deps.sh)"

# The mirror apt already uses (deb822 sources or sources.list), else Debian's default.
MIRROR=$(cat /etc/apt/sources.list.d/*.sources 2>/dev/null |
    awk '$1 == "URIs:" && $2 !~ /security/ {print $2; exit}' || true)
[ -n "$MIRROR" ] || MIRROR=$(awk '$1 == "deb" && $2 !~ /^\[/ && $2 !~ /security/ {print $2; exit}' \
    /etc/apt/sources.list 2>/dev/null || true)
[ -n "$MIRROR" ] || MIRROR=http://deb.debian.org/debian
MIRROR=${MIRROR%/}
SECURITY=${MIRROR%/debian}/debian-security

mkdir -p "$(dirname "$OUT")" "$DEBS/partial"
# One build at a time per OUT_DIR; the loser re-checks the cache.
exec 9>"$OUT.lock"
flock 9
if is_cached; then
    say "up to date: $OUT (built concurrently)"
    exit 0
fi

T=$(mktemp -d /tmp/kumo-debian-build.XXXXXX)
STAGE=$(mktemp -d "$(dirname "$OUT")/.$(basename "$OUT").new.XXXXXX")
R=$T/root
OLD=""
MOUNTS=()
CHILD=""
# bg_run CMD...: runs a long step in its own process group and waits for it; bash runs the
# signal trap only once a foreground command ends, but interrupts a `wait` at once, and cleanup
# then ends the whole step (debootstrap, apt and dpkg in the chroot, ...).
bg_run() {
    local rc=0
    setsid "$@" &
    CHILD=$!
    wait "$CHILD" || rc=$?
    CHILD=""
    return "$rc"
}
unmount_all() {
    local i
    for ((i = ${#MOUNTS[@]} - 1; i >= 0; i--)); do
        if mountpoint -q "${MOUNTS[$i]}"; then
            umount "${MOUNTS[$i]}" 2>/dev/null || umount -l "${MOUNTS[$i]}" || true
        fi
    done
    MOUNTS=()
}
cleanup() {
    if [ -n "$CHILD" ]; then
        kill -TERM -- "-$CHILD" 2>/dev/null || true
        for _ in $(seq 100); do kill -0 -- "-$CHILD" 2>/dev/null || break; sleep 0.1; done
        kill -KILL -- "-$CHILD" 2>/dev/null || true
    fi
    unmount_all
    # Anything else still mounted under the build dir (e.g. debootstrap's own proc/sys after a
    # failure), deepest first.
    local m
    for m in $(awk -v t="$T/" 'index($2, t) == 1 {print $2}' /proc/self/mounts | sort -r); do
        umount "$m" 2>/dev/null || umount -l "$m" || true
    done
    # Never rm -rf through a mount that is still there.
    if grep -q " $T/" /proc/self/mounts; then
        say "warning: mounts left under $T; not removing it"
    else
        rm -rf "$T"
    fi
    rm -rf "$STAGE"
    [ -z "$OLD" ] || rm -rf "$OLD"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

bind() { # bind SRC DST-under-root [mount options...]
    local src=$1 dst=$R$2; shift 2
    mkdir -p "$dst"
    mount "$@" "$src" "$dst"
    MOUNTS+=("$dst")
}
in_root() { chroot "$R" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LC_ALL=C \
    DEBIAN_FRONTEND=noninteractive HOME=/root "$@"; }
in_root_bg() { bg_run chroot "$R" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LC_ALL=C \
    DEBIAN_FRONTEND=noninteractive HOME=/root "$@"; }

# -------------------------------------------------------------- debootstrap --
say "debootstrap $SUITE (minbase) from $MIRROR"
bg_run debootstrap --variant=minbase --cache-dir="$DEBS" --components=main "$SUITE" "$R" "$MIRROR" >"$T/debootstrap.log" 2>&1 ||
    { tail -n 30 "$T/debootstrap.log" >&2; die "debootstrap failed (log above)"; }

cat >"$R/etc/apt/sources.list" <<EOF
deb $MIRROR $SUITE main
deb $MIRROR $SUITE-updates main
deb $SECURITY $SUITE-security main
EOF
# No daemon starts inside the chroot.
printf '#!/bin/sh\nexit 101\n' >"$R/usr/sbin/policy-rc.d"
chmod 0755 "$R/usr/sbin/policy-rc.d"
# The disk layout the kernel's initramfs and the guest see.
ROOT_UUID=$(cat /proc/sys/kernel/random/uuid)
printf 'UUID=%s / ext4 rw,discard,errors=remount-ro 0 1\n' "$ROOT_UUID" >"$R/etc/fstab"
# Debian's kernel postinst keeps /vmlinuz and /initrd.img pointing at the newest kernel: GRUB
# boots those, so a kernel upgrade inside the guest needs no GRUB tooling.
printf 'do_symlinks = yes\nlink_in_boot = no\n' >"$R/etc/kernel-img.conf"
# A generic initramfs (MODULES=most): the build host's hardware says nothing about the guest's.
mkdir -p "$R/etc/initramfs-tools/conf.d"
printf 'MODULES=most\n' >"$R/etc/initramfs-tools/conf.d/kumo"

bind /proc /proc -t proc
bind /sys /sys -t sysfs
bind /dev /dev --bind
bind /dev/pts /dev/pts --bind
bind "$DEBS" /var/cache/apt/archives --bind

# shellcheck disable=SC2086,SC2116
say "apt-get install: $(echo $PKGS)"
# shellcheck disable=SC2086
{
    in_root_bg apt-get update -q &&
        in_root_bg apt-get -y -q dist-upgrade &&
        in_root_bg apt-get install -y -q --no-install-recommends $PKGS
} >"$T/apt.log" 2>&1 || { tail -n 40 "$T/apt.log" >&2; die "apt-get in the chroot failed (log above)"; }
# shellcheck disable=SC2016
in_root dpkg-query -W -f='${Package} ${Version}\n' >"$T/packages.txt"
unmount_all

KVER=$(ls -1 "$R/lib/modules" | sort -V | tail -n1)
[ -n "$KVER" ] && [ -f "$R/boot/vmlinuz-$KVER" ] && [ -f "$R/boot/initrd.img-$KVER" ] ||
    die "kernel or initramfs missing in the image"
# Belt and braces: the symlinks GRUB boots.
[ -e "$R/vmlinuz" ] || ln -sfn "boot/vmlinuz-$KVER" "$R/vmlinuz"
[ -e "$R/initrd.img" ] || ln -sfn "boot/initrd.img-$KVER" "$R/initrd.img"
KPKGVER=$(awk -v p="linux-image-$KVER" '$1 == p {print $2}' "$T/packages.txt")
CIVER=$(awk '$1 == "cloud-init" {print $2}' "$T/packages.txt")
grep -q "name: $DEFAULT_USER\$" "$R/etc/cloud/cloud.cfg" ||
    die "cloud.cfg's default_user is not $DEFAULT_USER: Debian changed its cloud-init defaults"

# ------------------------------------------------------------ configuration --
cat >"$R/etc/cloud/cloud.cfg.d/90-kumo.cfg" <<'EOF'
# Kumo: where cloud-init looks for its instance data. ds-identify narrows this list at boot:
# ConfigDrive (a filesystem labelled config-2 / CONFIG-2), NoCloud (labelled cidata / CIDATA, or
# ds=nocloud on the SMBIOS serial / kernel command line), OpenStack and Ec2 metadata services
# (only on platforms whose SMBIOS strings identify them).
datasource_list: [ ConfigDrive, NoCloud, OpenStack, Ec2, None ]
# Keys only: no password logins, for root or the default user.
ssh_pwauth: false
disable_root: true
# Built into glibc: no locale-gen at first boot (slow under TCG).
locale: C.UTF-8
# Host keys made at first boot: no RSA 3072 / DSA (~40 s of a first boot under TCG).
ssh_genkeytypes: [ ed25519, ecdsa ]
EOF
echo LANG=C.UTF-8 >"$R/etc/default/locale"
mkdir -p "$R/etc/ssh/sshd_config.d"
cat >"$R/etc/ssh/sshd_config.d/60-kumo.conf" <<'EOF'
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
HostKey /etc/ssh/ssh_host_ed25519_key
HostKey /etc/ssh/ssh_host_ecdsa_key
EOF
# Host keys are per instance: removed here, made by cloud-init at first boot (ssh module), and by
# this drop-in (before sshd's own config test) if cloud-init found no datasource.
rm -f "$R"/etc/ssh/ssh_host_*
mkdir -p "$R/etc/systemd/system/ssh.service.d"
cat >"$R/etc/systemd/system/ssh.service.d/kumo-hostkeys.conf" <<'EOF'
[Service]
ExecStartPre=
ExecStartPre=-/bin/sh -c 'test -s /etc/ssh/ssh_host_ed25519_key || ssh-keygen -q -t ed25519 -N "" -f /etc/ssh/ssh_host_ed25519_key; test -s /etc/ssh/ssh_host_ecdsa_key || ssh-keygen -q -t ecdsa -N "" -f /etc/ssh/ssh_host_ecdsa_key'
ExecStartPre=/usr/sbin/sshd -t
EOF
grep -qx 'ExecStartPre=/usr/sbin/sshd -t' "$R/lib/systemd/system/ssh.service" ||
    die "ssh.service changed: check the kumo-hostkeys drop-in"
# DHCP on any Ethernet NIC when cloud-init wrote no network configuration of its own (its files,
# 10-cloud-init-*.network, sort first and win).
cat >"$R/etc/systemd/network/99-kumo-dhcp.network" <<'EOF'
[Match]
Name=en* eth*

[Network]
DHCP=yes
EOF
in_root systemctl enable systemd-networkd.service systemd-resolved.service >/dev/null 2>&1 ||
    die "could not enable systemd-networkd"
in_root systemctl enable serial-getty@ttyS0.service >/dev/null 2>&1 || true
echo "$NAME" >"$R/etc/hostname"
printf '127.0.0.1\tlocalhost\n::1\t\tlocalhost ip6-localhost ip6-loopback\n' >"$R/etc/hosts"
# Per-instance identity and build leftovers.
: >"$R/etc/machine-id"
rm -f "$R/var/lib/dbus/machine-id" "$R/usr/sbin/policy-rc.d"
rm -rf "$R"/var/lib/apt/lists/* "$R"/var/cache/apt/*.bin "$R"/var/cache/apt/archives \
    "$R"/var/log/*.log "$R"/var/log/apt/* "$R"/tmp/* "$R"/var/tmp/* "$R"/root/.bash_history
mkdir -p "$R/var/cache/apt/archives/partial" "$R/var/lib/apt/lists/partial"
# resolv.conf: systemd-resolved's stub (the package's postinst normally makes this link).
ln -sfn ../run/systemd/resolve/stub-resolv.conf "$R/etc/resolv.conf"

# -------------------------------------------------------------------- GRUB --
mkdir -p "$R/boot/grub/i386-pc"
cp "$GRUB_LIB"/*.mod "$GRUB_LIB"/*.lst "$R/boot/grub/i386-pc/"
cat >"$R/boot/grub/grub.cfg" <<EOF
serial --unit=0 --speed=115200
terminal_input serial console
terminal_output serial console
set timeout=1
set default=0
menuentry 'Debian GNU/Linux 12 (Kumo)' {
    insmod part_msdos
    insmod ext2
    search --no-floppy --fs-uuid --set=root $ROOT_UUID
    linux /vmlinuz root=UUID=$ROOT_UUID ro $CMDLINE_EXTRA
    initrd /initrd.img
}
EOF
# core.img: sector 1 onwards (the gap before partition 1); its first sector's block list
# (filled by grub-mkimage) loads the rest from sector 2.  boot.img (MBR) loads sector 1.
# shellcheck disable=SC2086
grub-mkimage -O i386-pc -o "$T/core.img" -p "(hd0,msdos1)/boot/grub" $GRUB_MODULES
CORE_SECTORS=$(( ($(stat -c %s "$T/core.img") + 511) / 512 ))
[ "$CORE_SECTORS" -lt $((PART_START_MIB * 2048 - 1)) ] || die "core.img ($CORE_SECTORS sectors) too big"

# -------------------------------------------------------------------- disk --
PART_MIB=$((DISK_MIB - PART_START_MIB))
say "mkfs.ext4 -d (${PART_MIB} MiB partition)"
bg_run mkfs.ext4 -q -F -L debian-root -U "$ROOT_UUID" -O '^metadata_csum_seed,^orphan_file' \
    -E lazy_itable_init=0,lazy_journal_init=0 -d "$R" "$T/root.ext4" "${PART_MIB}M" 2>"$T/mkfs.log" ||
    { cat "$T/mkfs.log" >&2; die "mkfs.ext4 failed"; }
rm -rf "$R"
truncate -s "${DISK_MIB}M" "$T/disk.raw"
printf 'label: dos\nstart=%s, type=83, bootable\n' $((PART_START_MIB * 2048)) | sfdisk -q "$T/disk.raw"
dd if="$GRUB_LIB/boot.img" of="$T/disk.raw" bs=440 count=1 conv=notrunc status=none
dd if="$T/core.img" of="$T/disk.raw" bs=512 seek=1 conv=notrunc status=none
dd if="$T/root.ext4" of="$T/disk.raw" bs=1M seek="$PART_START_MIB" conv=notrunc,sparse status=none
rm -f "$T/root.ext4"
say "qemu-img convert -c (compressed qcow2)"
bg_run qemu-img convert -q -c -f raw -O qcow2 "$T/disk.raw" "$STAGE/disk.qcow2"
rm -f "$T/disk.raw"
cp "$T/packages.txt" "$STAGE/packages.txt"

# ---------------------------------------------------------------- manifest --
# kumod's reader (crates/kumo-control/src/app/images.rs, Manifest) uses name, os, disk and the
# absence of kernel/initrd (= firmware boot from the disk); the other fields are for the
# integration to come (boot mode, smallest disk, default user, datasources).
cat >"$STAGE/manifest.json" <<EOF
{"name":"$NAME","os":"Debian 12 (bookworm) kernel $KVER ($KPKGVER) + cloud-init $CIVER","description":"Debian 12 with cloud-init and SSH (user $DEFAULT_USER), built by images/debian/build.sh","disk":"disk.qcow2","boot":"disk","firmware":"bios","disk_bus":"virtio","min_disk_gib":$((DISK_MIB / 1024)),"min_memory_mib":$MIN_MEMORY_MIB,"default_user":"$DEFAULT_USER","os_family":"debian","os_version":"12","console":"ttyS0","cloud_init":{"version":"$CIVER","datasources":["ConfigDrive","NoCloud","OpenStack","Ec2"],"config_drive":["iso9660","vfat"],"label":"config-2"},"root_uuid":"$ROOT_UUID","recipe_hash":"$RECIPE_HASH"}
EOF
chmod 0644 "$STAGE"/*
chmod 0755 "$STAGE"
sync -f "$STAGE/disk.qcow2" 2>/dev/null || sync

# ------------------------------------------------------------ swap in place --
if [ -e "$OUT" ]; then
    OLD="$STAGE.old"
    mv -T "$OUT" "$OLD"
fi
if ! mv -T "$STAGE" "$OUT"; then
    [ -z "$OLD" ] || { mv -T "$OLD" "$OUT" && OLD=""; }
    die "could not move the new image into $OUT"
fi
say "built $OUT: kernel $KVER, cloud-init $CIVER, disk.qcow2 $(stat -c %s "$OUT/disk.qcow2") bytes, recipe $RECIPE_HASH"
