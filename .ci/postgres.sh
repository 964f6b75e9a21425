#!/usr/bin/env bash
# A throwaway PostgreSQL cluster for the tests that need one (tests/config/test_postgres.py, tests/e2e/test_workers.py,
# tests/payments/test_l402_store.py), on 127.0.0.1 and a Unix socket inside its own folder.
#
#   eval "$(.ci/postgres.sh start /tmp/sovereign-pg)"   # prints: export SOVEREIGN_MCP_TEST_POSTGRES_URL=...
#   .ci/postgres.sh stop /tmp/sovereign-pg               # stops the server and deletes the folder
#
# Uses the Debian packages' binaries (pg_config --bindir, else the newest /usr/lib/postgresql/*/bin;
# install with `apt-get install -y postgresql`). initdb refuses to run as root, so as root the cluster is
# owned by and run as the `postgres` user (created by the Debian package) through runuser.
set -euo pipefail

usage() { echo "usage: $0 start|stop DIR" >&2; exit 2; }
[[ $# -eq 2 ]] || usage
action=$1
dir=$2

bindir() {
    local found
    if command -v pg_config >/dev/null && [[ -x "$(pg_config --bindir)/initdb" ]]; then
        pg_config --bindir
        return
    fi
    found=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
    if [[ -z $found || ! -x $found/initdb ]]; then
        echo "PostgreSQL server binaries not found: apt-get install -y postgresql" >&2
        exit 1
    fi
    echo "$found"
}

as_owner() {  # run a PostgreSQL binary as the cluster's owner
    if [[ $(id -u) -eq 0 ]]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

case $action in
start)
    bin=$(bindir)
    mkdir -p "$dir"
    if [[ $(id -u) -eq 0 ]]; then
        id postgres >/dev/null 2>&1 || { echo "as root the cluster runs as user postgres; none exists" >&2; exit 1; }
        chown postgres: "$dir"
    fi
    port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    as_owner "$bin/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 --no-sync >"$dir/initdb.log" 2>&1 \
        || { cat "$dir/initdb.log" >&2; exit 1; }
    as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
        -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=300" start >&2 \
        || { cat "$dir/server.log" >&2; exit 1; }
    as_owner "$bin/createdb" -h 127.0.0.1 -p "$port" -U postgres sovereign_test
    echo "export SOVEREIGN_MCP_TEST_POSTGRES_URL=postgresql://postgres@127.0.0.1:$port/sovereign_test"
    ;;
stop)
    if [[ -f $dir/data/postmaster.pid ]]; then
        as_owner "$(bindir)/pg_ctl" -D "$dir/data" -m fast -w stop >&2 || true
    fi
    rm -rf "$dir"
    ;;
*)
    usage
    ;;
esac
