#!/usr/bin/env bash
# Start a PostgreSQL server for the test suite and print the line that points the tests at it:
#
#     eval "$(.ci/postgres.sh)"     # -> export LOCALAGENT_TEST_POSTGRES_URL=postgresql+psycopg://...
#
# Runs as root on a fresh Debian/Ubuntu machine: installs the `postgresql` package when missing, creates
# (once) a dedicated cluster `localagent_ci` listening on 127.0.0.1 only, starts it if it is down, and
# makes sure a login role that may create databases (the tests make one per module) and a database exist.
# Safe to run again: every step checks first. Only the export line goes to stdout; progress goes to stderr.
#
# Environment: LOCALAGENT_PG_PORT (default 54329), LOCALAGENT_PG_CLUSTER (default localagent_ci).
set -euo pipefail

CLUSTER="${LOCALAGENT_PG_CLUSTER:-localagent_ci}"
PORT="${LOCALAGENT_PG_PORT:-54329}"
ROLE=localagent
PASSWORD=localagent
DATABASE=localagent

say() { echo "postgres.sh: $*" >&2; }

if [ "$(id -u)" -ne 0 ]; then
    say "must run as root (it installs packages and manages a cluster as the postgres user)"
    exit 1
fi

if ! command -v pg_ctlcluster >/dev/null 2>&1 || ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
    say "installing postgresql"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    # policy-rc.d-less containers may try to start the default cluster; that is harmless either way.
    apt-get install -y -qq postgresql >&2
fi

VERSION="$(ls /usr/lib/postgresql | sort -V | tail -n 1)"

if ! pg_lsclusters -h | awk -v v="$VERSION" -v c="$CLUSTER" '$1 == v && $2 == c {found = 1} END {exit !found}'; then
    say "creating cluster $VERSION/$CLUSTER on 127.0.0.1:$PORT"
    pg_createcluster "$VERSION" "$CLUSTER" --port "$PORT" -- --auth-local=peer --auth-host=scram-sha-256 >&2
    conf="/etc/postgresql/$VERSION/$CLUSTER/conf.d"
    mkdir -p "$conf"
    cat >"$conf/localagent.conf" <<EOF
listen_addresses = '127.0.0.1'
max_connections = 300
fsync = off
synchronous_commit = off
full_page_writes = off
EOF
fi
PORT="$(pg_lsclusters -h | awk -v v="$VERSION" -v c="$CLUSTER" '$1 == v && $2 == c {print $3}')"

status="$(pg_lsclusters -h | awk -v v="$VERSION" -v c="$CLUSTER" '$1 == v && $2 == c {print $4}')"
if [ "$status" != "online" ]; then
    say "starting cluster $VERSION/$CLUSTER"
    pg_ctlcluster "$VERSION" "$CLUSTER" start >&2
fi

for _ in $(seq 1 60); do
    if pg_isready -q -h 127.0.0.1 -p "$PORT"; then
        break
    fi
    sleep 0.5
done
pg_isready -h 127.0.0.1 -p "$PORT" >&2

psql_admin() { su postgres -c "psql -X -q -v ON_ERROR_STOP=1 -p $PORT -d postgres $*" >&2; }

if [ -z "$(su postgres -c "psql -X -tA -p $PORT -d postgres -c \"SELECT 1 FROM pg_roles WHERE rolname = '$ROLE'\"")" ]; then
    psql_admin "-c \"CREATE ROLE $ROLE LOGIN CREATEDB PASSWORD '$PASSWORD'\""
fi
if [ -z "$(su postgres -c "psql -X -tA -p $PORT -d postgres -c \"SELECT 1 FROM pg_database WHERE datname = '$DATABASE'\"")" ]; then
    psql_admin "-c \"CREATE DATABASE $DATABASE OWNER $ROLE\""
fi

say "PostgreSQL $VERSION ready on 127.0.0.1:$PORT (cluster $CLUSTER, database $DATABASE)"
echo "export LOCALAGENT_TEST_POSTGRES_URL=postgresql+psycopg://$ROLE:$PASSWORD@127.0.0.1:$PORT/$DATABASE"
