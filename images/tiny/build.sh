#!/bin/bash
# Build Kumo's "tiny" guest image from Debian 12 packages:
#   linux-image-<abi>-cloud-amd64 (kernel + virtio modules) + busybox (the
#   dynamic build: its sh runs commands from PATH, see wget) + libc6.
#
#   images/tiny/build.sh [OUT_DIR]     (default /var/cache/kumo/images/tiny)
#
# Produces OUT_DIR/{vmlinuz,initrd.img,disk.qcow2,manifest.json}.
# Cached: exits at once if OUT_DIR/manifest.json has the current recipe_hash
# (sha256 over build.sh + init + wget).  Builds in temp dirs and renames the result
# into place, so a half-built image is never visible.  Runs as root (apt-get
# download, mknod); needs what scripts/install-deps.sh installs.
set -euo pipefail
export LC_ALL=C

OUT=${1:-/var/cache/kumo/images/tiny}
DEBS=${KUMO_DEB_CACHE:-/var/cache/kumo/debs}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
NAME=tiny
CMDLINE="console=ttyS0 panic=-1"
DISK_SIZE=1G
# Modules put in the initramfs (dependencies are added automatically).  vfat
# mounts the config drive with the kernel's defaults: codepage 437, iocharset
# ascii (CONFIG_FAT_DEFAULT_CODEPAGE/IOCHARSET), utf8 names.
MODULES="virtio_pci virtio_blk virtio_net virtio_console virtio_rng virtio_balloon button evdev vfat nls_cp437 nls_ascii nls_utf8"

say() { echo "build-tiny: $*" >&2; }
die() { say "error: $*"; exit 1; }

OUT=$(realpath -m "$OUT")
RECIPE_HASH=$(cd "$HERE" && sha256sum build.sh init wget | sha256sum | cut -d' ' -f1)

is_cached() {
    [ -f "$OUT/manifest.json" ] &&
        grep -q "\"recipe_hash\":\"$RECIPE_HASH\"" "$OUT/manifest.json" &&
        [ -f "$OUT/vmlinuz" ] && [ -f "$OUT/initrd.img" ] && [ -f "$OUT/disk.qcow2" ]
}

if is_cached; then
    say "up to date: $OUT (recipe $RECIPE_HASH)"
    exit 0
fi

[ "$(id -u)" -eq 0 ] || die "must run as root"
for tool in apt-get apt-cache dpkg-deb cpio gzip depmod modprobe mkfs.ext4 qemu-img sha256sum flock; do
    command -v "$tool" >/dev/null || die "$tool not found (run scripts/install-deps.sh)"
done

mkdir -p "$(dirname "$OUT")" "$DEBS"
# One build at a time per OUT_DIR; the loser re-checks the cache.
exec 9>"$OUT.lock"
flock 9
if is_cached; then
    say "up to date: $OUT (built concurrently)"
    exit 0
fi

T=$(mktemp -d /tmp/kumo-tiny-build.XXXXXX)
STAGE=$(mktemp -d "$(dirname "$OUT")/.$(basename "$OUT").new.XXXXXX")
OLD=""
DL=""
cleanup() {
    rm -rf "$T" "$STAGE" ${DL:+"$DL"}
    [ -z "$OLD" ] || rm -rf "$OLD"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

# ---------------------------------------------------------------- packages --
# Resolve the kernel ABI package behind the linux-image-cloud-amd64 metapackage.
resolve_kpkg() {
    apt-cache depends linux-image-cloud-amd64 2>/dev/null |
        awk '$1 == "Depends:" && $2 ~ /^linux-image-.*-cloud-amd64$/ {print $2; exit}' || true
}
KPKG=$(resolve_kpkg)
if [ -z "$KPKG" ]; then
    say "apt lists lack linux-image-cloud-amd64: apt-get update"
    apt-get update -q >&2 || true
    KPKG=$(resolve_kpkg)
fi
if [ -z "$KPKG" ]; then
    # Offline fallback: newest kernel already in the cache.
    KPKG=$(ls -1 "$DEBS"/linux-image-*-cloud-amd64_*.deb 2>/dev/null | sort -V | tail -n1 || true)
    [ -n "$KPKG" ] || die "cannot resolve linux-image-cloud-amd64 (no apt lists, nothing cached)"
    KPKG=$(basename "$KPKG"); KPKG=${KPKG%%_*}
fi
# Candidate versions of both packages, one apt-cache call: "pkg ver" lines.
CANDIDATES=$(apt-cache policy "$KPKG" busybox libc6 2>/dev/null |
    awk '/^[^ ].*:$/ {p = substr($0, 1, length($0) - 1)} /^  Candidate:/ {print p, $2}' || true)

# The lists may be stale (old kernel gone from the mirror): refresh once, rerun.
retry_after_apt_update() {
    if [ -z "${KUMO_TINY_APT_UPDATED:-}" ]; then
        say "$1: apt-get update and retry"
        apt-get update -q >&2 || true
        cleanup; trap - EXIT
        KUMO_TINY_APT_UPDATED=1 exec "$HERE/build.sh" "$OUT"
    fi
    die "$1"
}

# fetch_deb PKG VAR -> sets VAR to the path of PKG's .deb in $DEBS
# (downloads it if absent).
fetch_deb() {
    local pkg=$1 ver file
    ver=$(echo "$CANDIDATES" | awk -v p="$pkg" '$1 == p {print $2; exit}')
    if [ -z "$ver" ] || [ "$ver" = "(none)" ]; then
        file=$(ls -1 "$DEBS/${pkg}"_*.deb 2>/dev/null | sort -V | tail -n1 || true)
        [ -n "$file" ] || die "package $pkg not available from apt and not cached"
        say "using cached $file"
        printf -v "$2" '%s' "$file"; return
    fi
    # apt-get download names files PKG_VER_ARCH.deb with ':' escaped as %3a.
    file=$(ls -1 "$DEBS/${pkg}_${ver//:/%3a}"_*.deb 2>/dev/null | head -n1 || true)
    if [ -z "$file" ] || [ ! -s "$file" ]; then
        say "downloading $pkg $ver"
        DL=$(mktemp -d "$DEBS/.dl.XXXXXX")
        if ! (cd "$DL" && apt-get download -q -o APT::Sandbox::User=root "$pkg=$ver" >&2); then
            retry_after_apt_update "apt-get download $pkg=$ver failed"
        fi
        file="$DEBS/$(basename "$(ls -1 "$DL"/*.deb | head -n1)")"
        mv "$DL"/*.deb "$file"
        rm -rf "$DL"; DL=""
    fi
    printf -v "$2" '%s' "$file"
}

fetch_deb "$KPKG" KDEB
fetch_deb busybox BBDEB
fetch_deb libc6 LIBCDEB

say "extracting $(basename "$KDEB")"
dpkg-deb -x "$KDEB" "$T/k"
KVER=$(ls -1 "$T/k/lib/modules" | head -n1)
[ -n "$KVER" ] && [ -f "$T/k/boot/vmlinuz-$KVER" ] || die "unexpected kernel package layout"
KPKGVER=$(dpkg-deb -f "$KDEB" Version)
depmod -b "$T/k" "$KVER"

dpkg-deb -x "$BBDEB" "$T/bb"
dpkg-deb -x "$LIBCDEB" "$T/libc"
BBVER=$(dpkg-deb -f "$BBDEB" Version); BBVER=${BBVER#*:}; BBVER=${BBVER%%-*}

# --------------------------------------------------------------- initramfs --
R=$T/root
mkdir -p "$R"/{bin,sbin,usr/bin,usr/sbin,dev,proc,sys,run,tmp,mnt/root,etc/acpi/PWRF,lib/modules/"$KVER"}
chmod 1777 "$R/tmp"
install -m 0755 "$T/bb/bin/busybox" "$R/bin/busybox"
# The dynamic busybox, not busybox-static: the static build's sh runs its own applets before
# looking at PATH (FEATURE_SH_STANDALONE), so no wrapper could ever replace its broken
# `wget -T` for scripts. It needs the loader, libc and libresolv from libc6.
LIBDIR=lib/x86_64-linux-gnu
mkdir -p "$R/$LIBDIR" "$R/lib64"
for so in ld-linux-x86-64.so.2 libc.so.6 libresolv.so.2; do
    [ -e "$T/libc/$LIBDIR/$so" ] || die "$so missing from $(basename "$LIBCDEB")"
    cp -L "$T/libc/$LIBDIR/$so" "$R/$LIBDIR/$so"
done
ln -s "/$LIBDIR/ld-linux-x86-64.so.2" "$R/lib64/ld-linux-x86-64.so.2"
# Applet symlinks (/bin/sh, /sbin/acpid, ...).  In a chroot without /proc,
# "busybox --install -s" links every applet at its full path to argv[0].
chroot "$R" /bin/busybox --install -s
[ -L "$R/bin/sh" ] && [ -L "$R/sbin/acpid" ] && [ -L "$R/sbin/modprobe" ] ||
    die "busybox applet links missing"
install -m 0755 "$HERE/init" "$R/init"
# busybox wget crashes on -T (see the wrapper): the wrapper takes its place.
[ -L "$R/usr/bin/wget" ] || die "busybox wget link missing at /usr/bin/wget"
rm -f "$R/usr/bin/wget"
install -m 0755 "$HERE/wget" "$R/usr/bin/wget"
mknod -m 0600 "$R/dev/console" c 5 1
mknod -m 0666 "$R/dev/null" c 1 3

# busybox acpid maps KEY_POWER (ACPI power button) to /etc/acpi/PWRF/00000080.
cat >"$R/etc/acpi/PWRF/00000080" <<'EOF'
#!/bin/sh
exec /init kumo-poweroff
EOF
chmod 0755 "$R/etc/acpi/PWRF/00000080"
echo "kumo-guest" >"$R/etc/hostname"
printf 'root:x:0:0:root:/root:/bin/sh\n' >"$R/etc/passwd"
printf 'root:x:0:\n' >"$R/etc/group"

for m in $MODULES; do
    modprobe -d "$T/k" -S "$KVER" --show-depends "$m" |
        awk '$1 == "insmod" {print $2}' |
        while read -r ko; do
            rel=${ko#"$T/k/"}
            mkdir -p "$R/$(dirname "$rel")"
            [ -e "$R/$rel" ] || cp "$ko" "$R/$rel"
        done
done
for f in modules.order modules.builtin modules.builtin.modinfo; do
    cp "$T/k/lib/modules/$KVER/$f" "$R/lib/modules/$KVER/"
done
depmod -b "$R" "$KVER"
[ -s "$R/lib/modules/$KVER/modules.dep" ] || die "modules.dep missing in initramfs"

(cd "$R" && find . -mindepth 1 | sort | cpio -o -H newc -R 0:0 --quiet) | gzip -9 -n >"$STAGE/initrd.img"
cp "$T/k/boot/vmlinuz-$KVER" "$STAGE/vmlinuz"

# -------------------------------------------------------------------- disk --
truncate -s "$DISK_SIZE" "$T/disk.raw"
mkfs.ext4 -q -F -L kumo-root -E lazy_itable_init=0,lazy_journal_init=0 "$T/disk.raw"
qemu-img convert -q -f raw -O qcow2 "$T/disk.raw" "$STAGE/disk.qcow2"

# ---------------------------------------------------------------- manifest --
cat >"$STAGE/manifest.json" <<EOF
{"name":"$NAME","os":"Debian 12 kernel $KVER ($KPKGVER) + busybox $BBVER","kernel":"vmlinuz","initrd":"initrd.img","disk":"disk.qcow2","cmdline":"$CMDLINE","recipe_hash":"$RECIPE_HASH"}
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
say "built $OUT: kernel $KVER, initrd $(stat -c %s "$OUT/initrd.img") bytes, recipe $RECIPE_HASH"
