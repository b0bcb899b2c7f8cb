#!/bin/bash
# A Kumo cluster on one machine (Debian 12, as root), for tests and for a newcomer:
#
#   scripts/cluster.sh up [--hosts N] [--controllers M] [--zones Z] [--driver qemu|sim]
#   eval "$(scripts/cluster.sh env)"      # KUMO_URL, KUMO_URLS, KUMO_TOKEN, KUMO_CA_CERT for the CLI
#   kumo host list
#   scripts/cluster.sh down               # removes every process, namespace, bridge, database and directory it made
#
# What `up` makes (defaults: 3 hosts, 2 controllers, 1 zone, real QEMU guests):
# - a PostgreSQL database `kumo_cluster` on the server scripts/postgres.sh starts;
# - M controllers (`kumod controller`) on https://127.0.0.1:7410, :7411, … sharing one self-signed
#   certificate (the first one's), all on that database;
# - N hosts h1…hN: each an agent process (`kumod agent`) with its own data directory, joined with a
#   one-time token, its API on its own loopback address (127.0.77.11:7401, 127.0.77.12:7401, …), its
#   tenant data plane (bridges, taps, nft, DHCP, metadata) in its own network namespace kc-hI, and
#   that namespace on an underlay bridge (namespace kc-underlay, 10.77.0.0/24, hI = 10.77.0.(10+I)),
#   which VXLAN between hosts will use;
# - zones zone-a, zone-b, … (hosts spread over them round-robin).
#
# Why the control traffic runs on loopback addresses rather than over the underlay: the controllers,
# PostgreSQL and your CLI are in the machine's own network namespace, and this script never changes
# its addresses, routes, bridges or firewall (the machine's network rule); loopback addresses are
# there already. Guests of one VPC on different hosts cannot reach each other yet (VXLAN is a later
# step); see docs/operations.md.
set -euo pipefail
cd "$(dirname "$0")/.."

DIR=${KUMO_CLUSTER_DIR:-/var/lib/kumo-cluster}
DB=kumo_cluster
BASE_PORT=7410
UNDERLAY=kc-underlay
LETTERS=(a b c d e f g h i)

say() { echo "cluster.sh: $*" >&2; }
die() {
    say "error: $*"
    exit 1
}

[ "$(id -u)" -eq 0 ] || die "run as root"

psql_admin() {
    local url=$1
    shift
    (cd / && psql -X -q -v ON_ERROR_STOP=1 "$url" "$@")
}

print_env() {
    [ -f "$DIR/env" ] || die "no cluster is up ($DIR/env is missing)"
    cat "$DIR/env"
}

down() {
    if [ -d "$DIR" ]; then
        for pidfile in "$DIR"/*/kumod.pid; do
            [ -f "$pidfile" ] || continue
            pid=$(cat "$pidfile")
            kill -TERM "$pid" 2>/dev/null || true
        done
        for pidfile in "$DIR"/*/kumod.pid; do
            [ -f "$pidfile" ] || continue
            pid=$(cat "$pidfile")
            for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
            kill -KILL "$pid" 2>/dev/null || true
        done
        # Guests outlive their agent by design (they are in their own process groups): stop them.
        for d in "$DIR"/h*/instances; do
            [ -d "$d" ] || continue
            pkill -KILL -f -- "$d/" 2>/dev/null || true
        done
    fi
    for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep -E '^kc-(h[0-9]+|underlay)$' || true); do
        ip netns delete "$ns" 2>/dev/null || true
    done
    if url=$(scripts/postgres.sh 2>/dev/null | tail -n 1); then
        psql_admin "$url" -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1 || true
    fi
    rm -rf "$DIR"
    say "down: nothing of the cluster is left"
}

wait_file() {
    local file=$1 what=$2 log=$3
    for _ in $(seq 600); do
        [ -s "$file" ] && return 0
        sleep 0.1
    done
    tail -n 30 "$log" >&2 || true
    die "$what did not start (log: $log)"
}

up() {
    local hosts=3 controllers=2 zones=1 driver=qemu
    while [ $# -gt 0 ]; do
        case "$1" in
            --hosts) hosts=$2; shift 2 ;;
            --controllers) controllers=$2; shift 2 ;;
            --zones) zones=$2; shift 2 ;;
            --driver) driver=$2; shift 2 ;;
            *) die "unknown option $1 (up [--hosts N] [--controllers M] [--zones Z] [--driver qemu|sim])" ;;
        esac
    done
    [[ "$hosts" =~ ^[1-9][0-9]?$ && "$hosts" -le 50 ]] || die "--hosts must be 1..50"
    [[ "$controllers" =~ ^[1-9]$ ]] || die "--controllers must be 1..9"
    [[ "$zones" =~ ^[1-9]$ && "$zones" -le "$hosts" ]] || die "--zones must be 1..9 and at most --hosts"
    case "$driver" in qemu | sim) ;; *) die "--driver must be qemu or sim" ;; esac
    [ ! -e "$DIR" ] || die "$DIR exists: a cluster is up already (scripts/cluster.sh down first)"

    local url
    url=$(scripts/postgres.sh | tail -n 1)
    if [ "$driver" = qemu ]; then
        scripts/install-deps.sh >&2
        images/tiny/build.sh >&2
    fi
    say "building kumod and kumo (release)…"
    cargo build --release --locked -p kumod -p kumo-cli >&2
    local kumod kumo
    kumod=$(pwd)/target/release/kumod
    kumo=$(pwd)/target/release/kumo

    mkdir -p "$DIR"
    chmod 700 "$DIR"
    psql_admin "$url" -c "CREATE DATABASE $DB TEMPLATE template0 LC_COLLATE 'C' LC_CTYPE 'C'" \
        || die "could not create database $DB (a leftover? scripts/cluster.sh down)"
    local db_url=${url%/*}/$DB

    # Controllers: the first makes the certificate, the others serve it too (one fingerprint).
    # They share one master key (it opens the sealed secrets of S3 access keys, whichever
    # controller made them).
    local urls=() i
    head -c 32 /dev/urandom >"$DIR/master.key"
    chmod 600 "$DIR/master.key"
    for i in $(seq 1 "$controllers"); do
        local cdir=$DIR/c$i port=$((BASE_PORT + i - 1))
        mkdir -p "$cdir"
        local tls=(--tls-self-signed)
        if [ "$i" -gt 1 ]; then
            tls=(--tls-cert "$DIR/c1/tls/cert.pem" --tls-key "$DIR/c1/tls/key.pem")
        fi
        setsid nohup "$kumod" controller --data-dir "$cdir" --listen "127.0.0.1:$port" --s3-listen 127.0.0.1:0 --database "$db_url" \
            --master-key-file "$DIR/master.key" "${tls[@]}" >"$cdir/kumod.log" 2>&1 </dev/null &
        echo $! >"$cdir/kumod.pid"
        wait_file "$cdir/kumod.addr" "controller c$i" "$cdir/kumod.log"
        urls+=("https://127.0.0.1:$port")
    done
    local fp token joined
    fp=$(cat "$DIR/c1/tls/fingerprint")
    token=$(cat "$DIR/c1/admin-token")
    joined=$(
        IFS=,
        echo "${urls[*]}"
    )
    cat >"$DIR/env" <<ENV
KUMO_URL=${urls[0]}
KUMO_URLS=$joined
KUMO_TOKEN=$token
KUMO_CA_CERT=$DIR/c1/tls/cert.pem
ENV
    chmod 600 "$DIR/env"
    export KUMO_URL=${urls[0]} KUMO_TOKEN=$token KUMO_CA_CERT=$DIR/c1/tls/cert.pem

    for z in $(seq 1 "$zones"); do
        "$kumo" zone create "zone-${LETTERS[z - 1]}" >/dev/null
    done

    # The underlay: one bridge in its own namespace, a veth into each host's namespace.
    ip netns add "$UNDERLAY"
    ip -n "$UNDERLAY" link add kcu0 type bridge
    ip -n "$UNDERLAY" link set kcu0 up
    for i in $(seq 1 "$hosts"); do
        local ns=kc-h$i
        ip netns add "$ns"
        ip -n "$ns" link set lo up
        ip link add "kcu$i" netns "$UNDERLAY" type veth peer name underlay netns "$ns"
        ip -n "$UNDERLAY" link set "kcu$i" master kcu0 up
        ip -n "$ns" addr add "10.77.0.$((10 + i))/24" dev underlay
        ip -n "$ns" link set underlay up
    done

    for i in $(seq 1 "$hosts"); do
        local hdir=$DIR/h$i zone jt
        zone="zone-${LETTERS[(i - 1) % zones]}"
        mkdir -p "$hdir"
        jt=$("$kumo" host join-token create --zone "$zone" --output json | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')
        local extra=(--driver "$driver" --host-netns "kc-h$i")
        if [ "$driver" = sim ]; then
            extra=(--driver sim --image-cache /nonexistent)
        fi
        setsid nohup "$kumod" agent --data-dir "$hdir" --listen "127.0.77.$((10 + i)):7401" \
            --controller "$joined" --controller-fingerprint "$fp" --join-token "$jt" --zone "$zone" \
            --host-name "h$i" "${extra[@]}" >"$hdir/kumod.log" 2>&1 </dev/null &
        echo $! >"$hdir/kumod.pid"
        wait_file "$hdir/agent.addr" "agent h$i" "$hdir/kumod.log"
    done

    say "waiting for $hosts hosts to be ready…"
    for _ in $(seq 150); do
        local ready
        ready=$("$kumo" host list --output json | python3 -c \
            'import json,sys; v = json.load(sys.stdin); v = v.get("items", v) if isinstance(v, dict) else v; print(sum(1 for h in v if h.get("state") == "ready"))' 2>/dev/null || echo 0)
        [ "$ready" -ge "$hosts" ] && break
        sleep 0.2
    done
    [ "${ready:-0}" -ge "$hosts" ] || die "only ${ready:-0} of $hosts hosts became ready (logs in $DIR/h*/kumod.log)"
    "$kumo" host list >&2
    say "up: $controllers controller(s), $hosts host(s) in $zones zone(s); use the CLI with: eval \"\$(scripts/cluster.sh env)\""
    cat "$DIR/env"
}

case "${1:-}" in
    up) shift; up "$@" ;;
    down) down ;;
    env) print_env ;;
    *) die "usage: scripts/cluster.sh up [--hosts N] [--controllers M] [--zones Z] [--driver qemu|sim] | env | down" ;;
esac
