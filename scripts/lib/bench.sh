# The benchmark harness that scripts/bench.sh and scripts/bench-offsite.sh
# source: options, the work directory and its cleanup, the release build,
# timing under GNU time, alternating runs and their medians, JSON through jq, the report's common
# lines and the rewrite of one section of docs/benchmarks.md.
#
# Timings are kept in associative arrays keyed by step name, not in
# variables named at run time: wall[NAME] (s), rss[NAME] (peak RSS, KiB),
# cpu[NAME] (user + system s), probe[NAME] (the probe's delta, if any) and,
# after median, runs[NAME] (every run's wall time) and median_run[NAME]
# (the run whose figures NAME shows). parts[STEP] names the parts of a
# step (timed separately in every run) that get medians of their own.
#
# A script sets bench_name (the log prefix) and opt (its options with a
# value and their defaults; whole numbers unless choices[NAME] lists the
# words allowed) before sourcing this file, and may
# define on_cleanup (stops its services) and timed_probe (a command printing
# a cumulative figure, e.g. a server's CPU seconds, read around every timed
# step). The sandboxes themselves are the test harness's:
# scripts/pg-sandbox.sh and scripts/azurite.sh.
# shellcheck shell=bash

lib_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
here=$(cd "$lib_dir/.." && pwd)
root=$(cd "$here/.." && pwd)
tool="$root/target/release/valerix-backup"
docs="$root/docs/benchmarks.md"

: "${bench_name:?set bench_name before sourcing lib/bench.sh}"
declare -gA opt     # the script's, with its defaults
declare -gA choices # for an option of opt that is a word: its allowed values
write_docs=0
keep=0
work=""
declare -gA wall=() rss=() cpu=() probe=() runs=() median_run=() parts=()

log() { printf '%s: %s\n' "$bench_name" "$*" >&2; }
die() { printf '%s: FAILED: %s\n' "$bench_name" "$*" >&2; exit 1; }
usage_error() { printf '%s: %s\n' "$bench_name" "$*" >&2; exit 2; }

# Floating point arithmetic: calc 'EXPR' [printf format].
calc() { awk "BEGIN { printf \"${2:-%.2f}\", $1 }"; }
mib() { calc "$1 / 1048576" "${2:-%.1f}"; }
# KiB (GNU time's %M) as MiB with one decimal.
kib_mib() { calc "$1 / 1024" %.1f; }
verdict() { if awk "BEGIN { exit !($1) }"; then echo PASS; else echo FAIL; fi; }

# ---------------------------------------------------------------- options

# The script's usage: its header comment, from line 2 to the line about the
# report.
usage() { sed -n '2,/^# The markdown report/p' "$0" | sed 's/^# \{0,1\}//'; }

# parse_args ARGS...: --write-docs, --keep, --help, and --NAME N or
# --NAME=N for every NAME in opt.
parse_args() {
  while [ $# -gt 0 ]; do
    case "$1" in
      --write-docs) write_docs=1 ;;
      --keep) keep=1 ;;
      -h|--help) usage; exit 0 ;;
      --*=*) set_opt "${1%%=*}" "${1#*=}" ;;
      --*)
        [ -n "${opt[${1#--}]+set}" ] || usage_error "unknown argument $1 (try --help)"
        [ $# -ge 2 ] || usage_error "$1 needs a value"
        set_opt "$1" "$2"; shift ;;
      *) usage_error "unknown argument $1 (try --help)" ;;
    esac
    shift
  done
}

set_opt() {
  local name=${1#--} choice
  [ -n "${opt[$name]+set}" ] || usage_error "unknown argument $1 (try --help)"
  if [ -n "${choices[$name]+set}" ]; then
    for choice in ${choices[$name]}; do
      [ "$2" != "$choice" ] || { opt[$name]=$2; return 0; }
    done
    usage_error "$1 wants one of: ${choices[$name]}"
  fi
  case "$2" in ''|*[!0-9]*) usage_error "$1 wants a whole number" ;; esac
  opt[$name]=$2
}

# ---------------------------------------------------------------- setup

cleanup() {
  local rc=$?
  if [ -n "$work" ] && [ -d "$work" ]; then
    if declare -F on_cleanup >/dev/null; then on_cleanup || true; fi
    if [ "$keep" -eq 1 ]; then log "kept $work"; else rm -rf "$work"; fi
  fi
  [ "$rc" -eq 0 ] || log "exit status $rc"
}

# Installs what is missing, builds the release binary and makes the work
# directory (under /tmp, named after PREFIX), deleted on exit.
prepare_common() {
  trap cleanup EXIT
  trap 'exit 130' INT TERM
  "$here/setup.sh"
  log "cargo build --release"
  (cd "$root" && cargo build --release --quiet --bin valerix-backup --example archive_tool)
  [ -x "$tool" ] || die "no $tool after the build"
  work=$(mktemp -d "/tmp/$1.XXXXXX")
}

# ---------------------------------------------------------------- timing

# timed NAME CMD...: runs CMD under GNU time into wall, rss and cpu [NAME],
# and probe[NAME] when timed_probe is set. %M is Linux's ru_maxrss of the
# child: the larger of the child's own peak RSS and that of its largest
# waited-for descendant. CMD's exit status is returned.
timed() {
  local name=$1 rc=0 p0="" p1 w m u s; shift
  [ -z "${timed_probe:-}" ] || p0=$("$timed_probe")
  /usr/bin/time -f '%e %M %U %S' -o "$work/time.$name" "$@" || rc=$?
  # The last line: GNU time puts "Command exited with..." before it.
  read -r w m u s < <(tail -n 1 "$work/time.$name")
  wall[$name]=$w
  rss[$name]=$m
  cpu[$name]=$(calc "$u + $s")
  if [ -n "$p0" ]; then
    p1=$("$timed_probe")
    probe[$name]=$(calc "$p1 - $p0")
  fi
  return "$rc"
}

# in_sequence NAME PART...: a step made of commands run one after the
# other: its wall and CPU the sum of theirs, its peak RSS the largest.
in_sequence() {
  local name=$1 part w=0 c=0 p="" top=0; shift
  for part in "$@"; do
    w=$(calc "$w + ${wall[$part]}")
    c=$(calc "$c + ${cpu[$part]}")
    [ -z "${probe[$part]-}" ] || p=$(calc "${p:-0} + ${probe[$part]}")
    [ "${rss[$part]}" -le "$top" ] || top=${rss[$part]}
  done
  wall[$name]=$w
  cpu[$name]=$c
  [ -z "$p" ] || probe[$name]=$p
  rss[$name]=$top
}

# median NAME RUN...: wall[NAME] the median wall time of the runs (of an
# even number, the lower of the middle two: always a run that happened),
# with that run's CPU and probe figures and median_run[NAME] its name;
# rss[NAME] the largest peak RSS of all runs; runs[NAME] every run's wall
# time, in order. Medians, not the best run: one lucky run says nothing
# about what an engineer waits for.
median() {
  local name=$1 r top=0 all=() mid; shift
  for r in "$@"; do
    all+=("${wall[$r]}")
    [ "${rss[$r]}" -le "$top" ] || top=${rss[$r]}
  done
  mid=$(for r in "$@"; do printf '%s %s\n' "${wall[$r]}" "$r"; done \
    | sort -g | sed -n "$(( ($# + 1) / 2 ))p" | cut -d' ' -f2)
  wall[$name]=${wall[$mid]}
  cpu[$name]=${cpu[$mid]}
  probe[$name]=${probe[$mid]-}
  rss[$name]=$top
  # shellcheck disable=SC2034 # median_run and runs are read by the reports
  median_run[$name]=$mid
  # shellcheck disable=SC2034
  runs[$name]="${all[*]}"
}

# alternate N STEP...: runs step_STEP 1, for every STEP in turn, then the
# same with 2, ... N, so that no tool always runs on a cache the other one
# warmed; then median STEP over STEP1 ... STEPN, and the same for every
# part PART of a step that timed PART1 ... PARTN (listed in parts[STEP]).
alternate() {
  local n=$1 r step part names; shift
  for r in $(seq 1 "$n"); do
    for step in "$@"; do
      log "round $r of $n: $step"
      "step_$step" "$r"
    done
  done
  for step in "$@"; do
    for part in $step ${parts[$step]-}; do
      names=()
      for r in $(seq 1 "$n"); do names+=("$part$r"); done
      median "$part" "${names[@]}"
    done
  done
}

# ---------------------------------------------------------------- JSON

# json_values FILE FILTER: the values FILTER yields from FILE on one line,
# separated by spaces (each one a word: numbers, booleans, names), for
# `read`; fails when FILE is not JSON or a value is missing (null).
json_values() {
  jq -er "[$1] | if any(.[]; . == null) then error(\"missing\") else map(tostring) | join(\" \") end" \
    "$2" 2>/dev/null \
    || { log "$2: no $1 in it"; return 1; }
}

# json_check FILE FILTER [jq args...]: FILTER must yield true on FILE.
json_check() {
  local file=$1 filter=$2; shift 2
  jq -e "$@" "$filter" "$file" >/dev/null
}

# valerix-backup's own listing (config CFG) must show exactly one good
# backup.
check_one_good_backup() {
  "$tool" -c "$1" list order --json >"$work/list.json" 2>"$work/list.log" \
    || { cat "$work/list.log" >&2; die "valerix-backup list"; }
  json_check "$work/list.json" 'length == 1 and .[0].state == "ok"' \
    || die "valerix-backup list does not show exactly one good backup: $(cat "$work/list.json")"
}

# Indents a tool's log under the harness's own lines.
show_log() { sed 's/^/    | /' "$1" >&2; }

# ---------------------------------------------------------------- report

# "2 cores (nproc), CPU, N GiB RAM, OS" for the Machine line.
machine() {
  local cpu_model mem os
  cpu_model=$(lscpu | sed -n 's/^Model name: *//p' | head -n 1)
  mem=$(awk '/^MemTotal:/ { printf "%.0f", $2 / 1048576 }' /proc/meminfo)
  os=$(sed -n 's/^PRETTY_NAME="\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' /etc/os-release)
  printf '%s cores (nproc), %s, %s GiB RAM, %s' "$(nproc)" "${cpu_model:-unknown CPU}" "$mem" "$os"
}

# The commit measured, marked when the source differs from it.
commit() {
  local c
  c=$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)
  [ -z "$(git -C "$root" status --porcelain -- src Cargo.toml Cargo.lock 2>/dev/null)" ] \
    || c="$c + uncommitted changes in src/"
  printf '%s' "$c"
}

# emit_report HEADING SECTION: prints SECTION (the report, starting with the
# line HEADING) and, with --write-docs, puts it in docs/benchmarks.md in
# place of the section under HEADING (up to the next "## " heading), or
# after the last section when there is none.
emit_report() {
  local heading=$1 section=$2 new="$docs.tmp.$$"
  printf '%s\n' "$section"
  [ "$write_docs" -eq 1 ] || return 0
  [ -f "$docs" ] || die "$docs does not exist"
  printf '%s\n' "$section" >"$work/section.md"
  awk -v section_file="$work/section.md" -v heading="$heading" '
    function emit() { while ((getline line < section_file) > 0) print line; done = 1 }
    $0 == heading { emit(); skipping = 1; next }
    skipping && /^## / { skipping = 0; print ""; }
    !skipping { print; last = $0 }
    END { if (!done) { if (last != "") print ""; emit() } }
  ' "$docs" >"$new" || { rm -f "$new"; die "writing $docs"; }
  mv "$new" "$docs"
  log "wrote $docs"
}
