#!/bin/sh
# Make sure a local PostgreSQL is ready for Kumo's store tests (Debian 12, run as root).
#
#   url=$(scripts/postgres.sh)      # e.g. KUMO_TEST_POSTGRES_URL=$(scripts/postgres.sh)
#
# Installs Debian's postgresql package if it is missing, creates/starts the cluster on port 5432,
# makes sure a role kumo (password kumo, CREATEDB, member of pg_signal_backend) exists, checks that password login over TCP on
# 127.0.0.1:5432 works, and prints the URL to connect with as the last (only) line of stdout.
# Everything else goes to stderr. Idempotent, and quick (no apt, no restart) when all is in place.
set -eu

PORT=5432
URL="postgres://kumo:kumo@127.0.0.1:$PORT/postgres"

# Keep stdout for the URL only.
exec 3>&1 1>&2

say() { echo "postgres.sh: $*" >&2; }
die() {
    say "error: $*"
    exit 1
}

[ "$(id -u)" -eq 0 ] || die "must run as root"

# psql as the postgres superuser over the local socket (peer auth); cd so psql can stat its cwd.
as_postgres() {
    (cd / && runuser -u postgres -- "$@")
}

# Password login over TCP, as the tests will do it. Prints "t" when kumo may create databases and
# drop them while an autovacuum worker is in one (DROP DATABASE ... WITH (FORCE) terminates it, which
# needs pg_signal_backend: without it a test's cleanup fails now and then after many writes).
check_tcp() {
    (cd / && PGPASSWORD=kumo PGCONNECT_TIMEOUT=5 psql -X -q -w -h 127.0.0.1 -p "$PORT" -U kumo -d postgres -Atc \
        "SELECT rolcreatedb AND pg_has_role(current_user, 'pg_signal_backend', 'MEMBER') \
         FROM pg_roles WHERE rolname = current_user" 2>/dev/null) || true
}

installed() {
    [ "$(dpkg-query -W -f='${db:Status-Abbrev}' "$1" 2>/dev/null)" = "ii " ]
}

# 1. The package.
if ! installed postgresql || ! command -v pg_lsclusters >/dev/null 2>&1; then
    say "installing postgresql from Debian"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold postgresql
fi
installed postgresql || die "the postgresql package is still not installed"

# 2. The cluster listening on $PORT (pg_lsclusters -h: version name port status owner datadir log).
cluster_line() {
    pg_lsclusters -h 2>/dev/null | awk -v p="$PORT" '$3 == p { print; exit }'
}
line=$(cluster_line)
if [ -z "$line" ]; then
    if pg_lsclusters -h 2>/dev/null | awk '$2 == "main" { found = 1 } END { exit !found }'; then
        die "a cluster named main exists but not on port $PORT: $(pg_lsclusters -h | tr '\n' ' ')"
    fi
    ver=$(ls /usr/lib/postgresql 2>/dev/null | sort -n | tail -n 1)
    [ -n "$ver" ] || die "no PostgreSQL server binaries under /usr/lib/postgresql"
    say "creating cluster $ver/main on port $PORT"
    pg_createcluster -p "$PORT" "$ver" main 3>&-
    line=$(cluster_line)
    [ -n "$line" ] || die "pg_createcluster did not create a cluster on port $PORT"
fi
ver=$(echo "$line" | awk '{ print $1 }')
name=$(echo "$line" | awk '{ print $2 }')
status=$(echo "$line" | awk '{ print $4 }')
logfile=$(echo "$line" | awk '{ print $7 }')

case "$status" in
    online*) ;;
    *)
        say "starting cluster $ver/$name"
        # 3>&-: the server must not inherit the caller's stdout (fd 3), or `url=$(postgres.sh)`
        # waits for the server to exit, i.e. forever.
        if ! out=$(pg_ctlcluster "$ver" "$name" start 2>&1 3>&-); then
            case "$out" in
                *"already running"*) ;;
                *)
                    echo "$out" >&2
                    [ -r "$logfile" ] && tail -n 20 "$logfile" >&2
                    die "could not start cluster $ver/$name"
                    ;;
            esac
        fi
        ;;
esac

# Wait (with a deadline) until the server accepts connections on 127.0.0.1:$PORT.
i=0
until pg_isready -q -h 127.0.0.1 -p "$PORT"; do
    i=$((i + 1))
    if [ "$i" -ge 60 ]; then
        [ -r "$logfile" ] && tail -n 20 "$logfile" >&2
        die "PostgreSQL did not accept connections on 127.0.0.1:$PORT within 30 s"
    fi
    sleep 0.5
done

# 3. The role.
if [ "$(check_tcp)" != "t" ]; then
    say "creating/updating role kumo"
    as_postgres psql -X -q -v ON_ERROR_STOP=1 -d postgres <<'SQL'
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'kumo') THEN
        CREATE ROLE kumo LOGIN CREATEDB PASSWORD 'kumo';
    ELSE
        ALTER ROLE kumo LOGIN CREATEDB PASSWORD 'kumo';
    END IF;
END
$$;
GRANT pg_signal_backend TO kumo;
SQL
    # 4. TCP + password auth, as the tests connect.
    if [ "$(check_tcp)" != "t" ]; then
        (cd / && PGPASSWORD=kumo psql -X -w -h 127.0.0.1 -p "$PORT" -U kumo -d postgres -c "SELECT 1") >&2 || true
        die "cannot log in as kumo over TCP on 127.0.0.1:$PORT with a password; check" \
            "/etc/postgresql/$ver/$name/pg_hba.conf (needs: host all all 127.0.0.1/32 scram-sha-256)"
    fi
fi

say "ready: cluster $ver/$name on 127.0.0.1:$PORT, role kumo"
echo "$URL" >&3
