#!/usr/bin/env bash
# A private, throwaway PostgreSQL cluster for the demo, the tests and the
# benchmark: initdb in DIR, a loopback port, scram-sha-256 over TCP (so a
# wrong password really fails), trust on its own Unix socket in DIR for the
# harness. As root, server programs run as the postgres user.
#
#   pg-sandbox.sh start DIR PORT     create and start (DIR must not exist)
#   pg-sandbox.sh seed DIR PORT [SCALE]
#                                    the seed's users and databases, with data
#   pg-sandbox.sh psql DIR PORT [psql args...]   superuser psql on the socket
#   pg-sandbox.sh stop DIR           stop and delete
#   pg-sandbox.sh free-port          print a free loopback port
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
fixtures="$here/../tests/fixtures"
bin=${PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)}

as_pg() {
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

cmd=${1:?usage: pg-sandbox.sh start|seed|psql|stop|free-port ...}
case "$cmd" in
free-port)
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
  ;;
start)
  dir=${2:?DIR}; port=${3:?PORT}
  mkdir -p "$dir"; chmod 755 "$dir"
  if [ "$(id -u)" -eq 0 ]; then
    chown postgres "$dir"
    runuser -u postgres -- test -w "$dir" ||
      { echo "pg-sandbox.sh: the postgres user cannot reach $dir (a parent directory is private)" >&2; exit 1; }
  fi
  as_pg "$bin/initdb" -D "$dir/data" -U postgres -E UTF8 --locale=C.UTF-8 \
    --auth-local=trust --auth-host=scram-sha-256 --no-sync >"$dir/initdb.log" 2>&1 \
    || { cat "$dir/initdb.log" >&2; exit 1; }
  cat >>"$dir/data/postgresql.conf" <<CONF
port = $port
listen_addresses = '127.0.0.1'
unix_socket_directories = '$dir'
fsync = off
synchronous_commit = off
full_page_writes = off
max_connections = 40
shared_buffers = 128MB
max_wal_size = 2GB
CONF
  as_pg "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 start >/dev/null \
    || { cat "$dir/server.log" >&2; exit 1; }
  ;;
seed)
  dir=${2:?DIR}; port=${3:?PORT}; scale=${4:-200}
  p() { psql -X -q -v ON_ERROR_STOP=1 -h "$dir" -p "$port" -U postgres "$@"; }
  p -d postgres <<SQL
CREATE ROLE order_user LOGIN CREATEDB PASSWORD 'order_password';
CREATE ROLE inventory_user LOGIN CREATEDB PASSWORD 'inventory_password';
CREATE DATABASE order_db OWNER order_user;
CREATE DATABASE inventory_db OWNER inventory_user;
SQL
  PGOPTIONS="-c role=order_user" p -d order_db -v scale="$scale" -f "$fixtures/order_db.sql"
  PGOPTIONS="-c role=inventory_user" p -d inventory_db -v scale="$scale" -f "$fixtures/inventory_db.sql"
  ;;
psql)
  dir=${2:?DIR}; port=${3:?PORT}; shift 3
  psql -X -h "$dir" -p "$port" -U postgres "$@"
  ;;
stop)
  dir=${2:?DIR}
  if [ -f "$dir/data/postmaster.pid" ]; then
    as_pg "$bin/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1 || true
  fi
  rm -rf "$dir"
  ;;
*) echo "pg-sandbox.sh: unknown command $cmd" >&2; exit 2 ;;
esac
