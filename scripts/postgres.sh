#!/usr/bin/env bash
# Starts a PostgreSQL server of ringside's own on loopback (installing Debian's package if it
# is missing) and prints its URL. The server keeps running; run the script again and it
# reuses it. For tests and scripts/cluster.sh, not for production (trust authentication on
# 127.0.0.1 only).
#   scripts/postgres.sh                 → postgres://ringside@127.0.0.1:54329/ringside
#   scripts/postgres.sh stop
#   RINGSIDE_PG_DIR=/x RINGSIDE_PG_PORT=5555 scripts/postgres.sh
set -euo pipefail
# (not under $HOME: as root, the postgres user could not reach a folder in /root)
dir="${RINGSIDE_PG_DIR:-/var/tmp/ringside-pg-$(id -un)}"
port="${RINGSIDE_PG_PORT:-54329}"
url="postgres://ringside@127.0.0.1:$port/ringside"

bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)
if [ -z "$bin" ] || [ ! -x "$bin/initdb" ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  echo "installing PostgreSQL (Debian's postgresql package)" >&2
  $SUDO apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq postgresql >&2
  bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
fi

# PostgreSQL refuses to run as root: as root, the server runs as the postgres user.
as_pg() { if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

if [ "${1:-}" = stop ]; then
  [ -f "$dir/data/postmaster.pid" ] && as_pg "$bin/pg_ctl" -D "$dir/data" -m fast stop >&2
  exit 0
fi

mkdir -p "$dir"
[ "$(id -u)" -eq 0 ] && chown postgres: "$dir"
if [ ! -f "$dir/data/PG_VERSION" ]; then
  as_pg "$bin/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 >"$dir/initdb.log" 2>&1 \
    || { cat "$dir/initdb.log" >&2; exit 1; }
fi
if ! as_pg "$bin/pg_ctl" -D "$dir/data" status >/dev/null 2>&1; then
  as_pg "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -p $port -k $dir -c max_connections=300 -c fsync=on" start >&2 \
    || { tail -20 "$dir/server.log" >&2; exit 1; }
fi
psql=("$bin/psql" -h 127.0.0.1 -p "$port" -U postgres -d postgres -qtA)
if [ "$("${psql[@]}" -c "SELECT 1 FROM pg_roles WHERE rolname='ringside'")" != 1 ]; then
  "${psql[@]}" -c "CREATE ROLE ringside LOGIN CREATEDB" >&2
fi
if [ "$("${psql[@]}" -c "SELECT 1 FROM pg_database WHERE datname='ringside'")" != 1 ]; then
  "${psql[@]}" -c "CREATE DATABASE ringside OWNER ringside" >&2
fi
echo "$url"
