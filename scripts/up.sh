#!/bin/bash
# Brings up a working one-machine Kumo cloud (Debian 12, as root):
#   installs the system packages, builds the tiny guest image (cached machine-wide), builds and
#   installs kumod + kumo into /usr/local/bin, starts kumod on https://127.0.0.1:7400 (a self-signed
#   certificate made at first start in /var/lib/kumo/tls, kept afterwards) with its data in
#   /var/lib/kumo, and logs the CLI in with the operator token, trusting that certificate.
# Tenant networks (bridges, taps, nft, DHCP, metadata, the floating-IP uplink) live in the network
# namespace `kumo` (KUMO_HOST_NETNS), so the machine's own addresses, routes and firewall are never
# touched; floating IPs come from KUMO_PUBLIC_IP_POOL (default 192.0.2.0/24, a documentation range)
# and are reachable from inside that namespace: `ip netns exec kumo curl http://<floating ip>/`.
# For a production host whose public pool is routed to it, see docs/operations.md (--host-network).
# Run it again to upgrade: kumod is restarted on the new binary; running guests keep running.
set -euo pipefail
cd "$(dirname "$0")/.."

DATA_DIR=${KUMO_DATA_DIR:-/var/lib/kumo}
LISTEN=${KUMO_LISTEN:-127.0.0.1:7400}
LOG=${KUMO_LOG:-/var/log/kumod.log}
NETNS=${KUMO_HOST_NETNS:-kumo}
POOL=${KUMO_PUBLIC_IP_POOL:-192.0.2.0/24}

[ "$(id -u)" -eq 0 ] || { echo "up: run as root" >&2; exit 1; }

scripts/install-deps.sh
images/tiny/build.sh
echo "up: building kumod and kumo (release)…"
cargo build --release --locked -p kumod -p kumo-cli
install -m 0755 target/release/kumod target/release/kumo /usr/local/bin/

mkdir -p "$DATA_DIR"
if pid=$(pgrep -f "^/usr/local/bin/kumod --data-dir $DATA_DIR" | head -1) && [ -n "$pid" ]; then
    echo "up: restarting kumod (pid $pid) on the new binary; guests keep running"
    kill -TERM "$pid"
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
fi
rm -f "$DATA_DIR/kumod.addr"
if [ -d /run/systemd/system ]; then
    cat > /etc/systemd/system/kumod.service <<UNIT
[Unit]
Description=Kumo IaaS server (all-in-one)
After=network-online.target

[Service]
ExecStart=/usr/local/bin/kumod --data-dir $DATA_DIR --listen $LISTEN --tls-self-signed --host-netns $NETNS --public-ip-pool $POOL
# Guests are QEMU processes in their own process groups: stopping or restarting kumod must not kill them.
KillMode=process
Restart=on-failure

[Install]
WantedBy=multi-user.target
UNIT
    systemctl daemon-reload
    systemctl enable --now kumod.service
    systemctl restart kumod.service
else
    setsid nohup /usr/local/bin/kumod --data-dir "$DATA_DIR" --listen "$LISTEN" --tls-self-signed \
        --host-netns "$NETNS" --public-ip-pool "$POOL" >>"$LOG" 2>&1 < /dev/null &
fi

for _ in $(seq 300); do
    [ -s "$DATA_DIR/kumod.addr" ] && break
    sleep 0.1
done
[ -s "$DATA_DIR/kumod.addr" ] || { echo "up: kumod did not start; see $LOG" >&2; tail -20 "$LOG" >&2; exit 1; }

# The CLI saves the certificate in its config (~/.config/kumo/config.json): later commands trust it.
kumo login --url "https://$LISTEN" --token-file "$DATA_DIR/admin-token" --ca-cert "$DATA_DIR/tls/cert.pem" >/dev/null
echo
echo "Kumo is up at https://$LISTEN (data in $DATA_DIR, log in $LOG)."
echo "Its TLS certificate ($DATA_DIR/tls/cert.pem, self-signed) has the SHA-256 fingerprint"
echo "  $(cat "$DATA_DIR/tls/fingerprint")"
echo "Check it when your browser (dashboard: https://$LISTEN/) or a remote CLI first connects:"
echo "  kumo login --url https://<this host>:${LISTEN##*:} --token-file FILE --fingerprint $(cat "$DATA_DIR/tls/fingerprint")"
kumo host list

# The public Debian 12 image (images/debian/build.sh: cloud-init, SSH, user `debian`): built once per
# machine in the background — 5 to 8 minutes on 2 cores, so the first command does not wait for it.
# kumod rescans its image cache every minute (--image-rescan-seconds) and makes the new image public
# without a restart. KUMO_DEBIAN_IMAGE=0 skips it.
DEBIAN_LOG=${KUMO_DEBIAN_LOG:-/var/log/kumo-debian-build.log}
if [ "${KUMO_DEBIAN_IMAGE:-1}" = 1 ]; then
    if kumo image view debian-12 >/dev/null 2>&1; then
        echo "up: the public image debian-12 is registered"
    else
        echo "up: building the public image debian-12 in the background (5-8 min; log $DEBIAN_LOG);"
        echo "    kumod lists it within a minute of the build's end: see \`kumo image list\`"
        setsid nohup nice -n 10 images/debian/build.sh /var/cache/kumo/images/debian-12 \
            >>"$DEBIAN_LOG" 2>&1 </dev/null &
    fi
fi
echo
echo "Try:"
echo "  kumo project create demo"
echo "  kumo instance create web1 --project demo --image tiny --type k1-nano --wait"
echo "  kumo instance serial web1 --project demo"
echo "  kumo ssh-key import laptop --project demo --public-key-file ~/.ssh/id_ed25519.pub"
echo "  kumo instance create deb1 --project demo --image debian-12 --type k1-small --ssh-key laptop --wait   # once debian-12 is listed"
echo "  kumo floating-ip create ip2 --project demo && kumo floating-ip attach ip2 --instance deb1 --project demo"
echo "  kumo security-group rule add default --project demo --ingress --protocol tcp --port 22 --source 0.0.0.0/0"
echo "  kumo instance ssh deb1 --project demo --netns $NETNS      # as the image's default user, debian"
echo "  kumo floating-ip create ip1 --project demo && kumo floating-ip attach ip1 --instance web1 --project demo"
echo "  kumo access-key create laptop --project demo   # as a user: S3 credentials for http://127.0.0.1:7480 (aws, rclone, s3cmd, boto3)"
echo "  ip netns exec $NETNS curl http://<the floating ip>/   # once a security-group rule opens port 80; public IPs live in the '$NETNS' namespace"
