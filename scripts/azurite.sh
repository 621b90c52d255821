#!/usr/bin/env bash
# A private, throwaway Azurite (Azure Storage emulator, blob service only) for
# the offsite tests and the benchmark, from the copy scripts/setup.sh pins
# into .tools/azurite. Loopback only, telemetry off (without
# --disableTelemetry Azurite tries to reach the internet and lingers on
# SIGTERM), the well-known devstoreaccount1 account, path-style URLs:
# http://127.0.0.1:PORT/devstoreaccount1/CONTAINER/BLOB.
#
#   azurite.sh start DIR PORT [disk|memory] [AZURITE_ARG...]
#                         start in the background and wait (20 s at most)
#                         until the port answers; pid in DIR/azurite.pid,
#                         output in DIR/azurite.log. disk (default) keeps
#                         blobs and uncommitted blocks in DIR/data, so a stop
#                         and a start on the same DIR and PORT lose nothing;
#                         memory keeps nothing. AZURITE_DEBUG=1 adds Azurite's
#                         debug log as DIR/debug.log. Any further arguments
#                         go to azurite-blob as they are, e.g. HTTPS with
#                         OAuth: --cert SERVER.pem --key SERVER.key --oauth
#                         basic (scripts/test-ca.sh makes the pair; Azurite
#                         then takes bearer tokens, and still the account
#                         key and SAS).
#   azurite.sh stop DIR   stop (SIGTERM, SIGKILL after 10 s); keeps DIR
#   azurite.sh conn PORT [http|https]
#                         print the connection string (http by default)
#   azurite.sh free-port  print a free loopback port
#
# Liveness is judged by the port, not by kill -0: PID 1 here does not reap
# orphans, so a dead emulator can linger as a zombie.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
azurite_blob="$here/../.tools/azurite/node_modules/.bin/azurite-blob"
account=devstoreaccount1
key='Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=='

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
# Running, and not a zombie.
alive() {
  local state
  state=$(sed 's/^.*) \(.\).*$/\1/' "/proc/$1/stat" 2>/dev/null) || return 1
  [ -n "$state" ] && [ "$state" != Z ]
}

cmd=${1:?usage: azurite.sh start|stop|conn|free-port ...}
case "$cmd" in
free-port)
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
  ;;
conn)
  port=${2:?PORT}; scheme=${3:-http}
  case "$scheme" in http|https) ;; *) echo "azurite.sh: scheme must be http or https, not $scheme" >&2; exit 2 ;; esac
  echo "DefaultEndpointsProtocol=$scheme;AccountName=$account;AccountKey=$key;BlobEndpoint=$scheme://127.0.0.1:$port/$account;"
  ;;
start)
  dir=${2:?DIR}; port=${3:?PORT}; mode=${4:-disk}
  [ -x "$azurite_blob" ] ||
    { echo "azurite.sh: $azurite_blob missing: run scripts/setup.sh" >&2; exit 1; }
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  if [ -f "$dir/azurite.pid" ] && alive "$(cat "$dir/azurite.pid")"; then
    echo "azurite.sh: already running in $dir (pid $(cat "$dir/azurite.pid"))" >&2; exit 1
  fi
  port_open "$port" && { echo "azurite.sh: 127.0.0.1:$port is already in use" >&2; exit 1; }
  case "$mode" in
  disk) mkdir -p "$dir/data"; store=(--location "$dir/data") ;;
  memory) store=(--inMemoryPersistence) ;;
  *) echo "azurite.sh: persistence must be disk or memory, not $mode" >&2; exit 2 ;;
  esac
  debug=()
  [ "${AZURITE_DEBUG:-}" != 1 ] || debug=(--debug "$dir/debug.log")
  extra=("${@:5}")
  # Detached from the caller's stdio (a caller that reads our output to EOF,
  # such as the Rust harness, would otherwise wait for the emulator to end)
  # and from its process group (a ^C in the terminal is for the caller).
  setsid "$azurite_blob" --blobHost 127.0.0.1 --blobPort "$port" "${store[@]}" \
    --silent --disableTelemetry "${debug[@]}" "${extra[@]}" </dev/null >>"$dir/azurite.log" 2>&1 &
  pid=$!
  echo "$pid" >"$dir/azurite.pid"
  echo "$port" >"$dir/azurite.port"
  for _ in $(seq 1 200); do
    port_open "$port" && exit 0
    alive "$pid" || break
    sleep 0.1
  done
  alive "$pid" && kill -KILL "$pid" 2>/dev/null || true
  rm -f "$dir/azurite.pid" "$dir/azurite.port"
  echo "azurite.sh: azurite-blob did not answer on 127.0.0.1:$port; $dir/azurite.log ends:" >&2
  tail -n 20 "$dir/azurite.log" >&2
  exit 1
  ;;
stop)
  dir=${2:?DIR}
  [ -f "$dir/azurite.pid" ] || exit 0
  pid=$(cat "$dir/azurite.pid"); port=$(cat "$dir/azurite.port" 2>/dev/null || true)
  # SIGTERM lets Azurite save its metadata (blob list, uncommitted blocks)
  # to DIR/data; SIGKILL only if it has not ended in 10 s.
  kill -TERM "$pid" 2>/dev/null || true
  for i in $(seq 1 100); do
    alive "$pid" || break
    [ "$i" -lt 100 ] || kill -KILL "$pid" 2>/dev/null || true
    sleep 0.1
  done
  if [ -n "$port" ]; then
    for _ in $(seq 1 50); do port_open "$port" || break; sleep 0.1; done
    ! port_open "$port" || { echo "azurite.sh: 127.0.0.1:$port still answers after stop" >&2; exit 1; }
  fi
  rm -f "$dir/azurite.pid" "$dir/azurite.port"
  ;;
*) echo "azurite.sh: unknown command $cmd" >&2; exit 2 ;;
esac
