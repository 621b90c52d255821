#!/usr/bin/env bash
# Builds every test target (`cargo test --all-targets --locked --no-run`) and
# runs the test binaries VALERIX_TEST_JOBS (default 3) at a time, slowest
# first, each from the package root as cargo runs them. A binary's output is
# printed whole when it ends, so parallel runs never interleave. Exit 1 when
# any binary failed, naming them; arguments go to every binary (a filter,
# --nocapture, ...).
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$repo"
jobs=${VALERIX_TEST_JOBS:-3}
# The slowest first (warm, 2 cores, 2026-12-01: offsite 123 s, geo_restore
# 100 s, backup_restore 53 s, immutable 40 s, agent 34 s), so that none of
# them starts last; deploy_manifests builds the container image. The others
# follow in cargo's order.
slow_first=(offsite geo_restore deploy_manifests backup_restore immutable agent restore_paths)

out=$(mktemp -d /tmp/valerix-tests.XXXXXX)
declare -A name_of=()
cleanup() {
  local pid
  for pid in "${!name_of[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$out"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

cargo test --all-targets --locked --no-run --message-format=json-render-diagnostics >"$out/build.json"
# kind, name, executable of every test binary
jq -r 'select(.reason == "compiler-artifact" and .profile.test and .executable != null)
       | [.target.kind[0], .target.name, .executable] | @tsv' "$out/build.json" >"$out/binaries"

declare -A exe_of=() label_of=()
order=()
while IFS=$'\t' read -r kind name exe; do
  case $kind in
  lib) label="unittests src/lib.rs" ;;
  bin) label="unittests src/main.rs" ;;
  *) label="tests/$name.rs" ;;
  esac
  key="$kind:$name"
  exe_of[$key]=$exe
  label_of[$key]=$label
  order+=("$key")
done <"$out/binaries"
queue=()
for name in "${slow_first[@]}"; do
  [ -z "${exe_of[test:$name]:-}" ] || queue+=("test:$name")
done
for key in "${order[@]}"; do
  [[ " ${queue[*]} " == *" $key "* ]] || queue+=("$key")
done

started=$(date +%s)
failed=()
report() {   # report PID: print the finished binary's output, note a failure
  local key=${name_of[$1]} rc
  unset "name_of[$1]"
  rc=$(cat "$out/${key/:/_}.rc" 2>/dev/null || echo 1)
  echo "     Running ${label_of[$key]} (${exe_of[$key]#"$repo"/})"
  cat "$out/${key/:/_}.log"
  [ "$rc" -eq 0 ] || failed+=("${label_of[$key]} (exit $rc)")
}
for key in "${queue[@]}"; do
  while [ "${#name_of[@]}" -ge "$jobs" ]; do
    wait -n -p done_pid || true
    report "$done_pid"
  done
  (
    rc=0
    "${exe_of[$key]}" "$@" >"$out/${key/:/_}.log" 2>&1 || rc=$?
    echo "$rc" >"$out/${key/:/_}.rc"
  ) &
  name_of[$!]=$key
done
while [ "${#name_of[@]}" -gt 0 ]; do
  wait -n -p done_pid || true
  report "$done_pid"
done

secs=$(($(date +%s) - started))
if [ "${#failed[@]}" -gt 0 ]; then
  echo "test binaries FAILED after ${secs} s: ${failed[*]}" >&2
  exit 1
fi
echo "all ${#queue[@]} test binaries passed in ${secs} s ($jobs at a time)"
