#!/usr/bin/env bash
# Benchmark: valerix-backup against the shell procedure it replaces, on a
# private PostgreSQL cluster holding an order_db of about --size-mb MB.
#
#   scripts/bench.sh [--size-mb N] [--write-docs] [--keep]
#
#   --size-mb N    target pg_database_size of order_db in MB (default 1000)
#   --write-docs   also replace the "Latest run" section of docs/benchmarks.md
#   --keep         keep the work directory (dumps, logs, fingerprints) for
#                  inspection; the sandbox cluster itself is always deleted
#
# Steps, one after the other in one run, each under GNU time (wall, peak RSS):
#   (a) seed backup:  pg_dump --format=custom --file=X.dump, then gzip X.dump
#   (b) valerix-backup backup order
#   (c) floor:        pg_dump --format=custom --compress=0 > /dev/null
#   (d) seed restore: gunzip -k, terminate, dropdb, createdb, serial pg_restore
#   (e) valerix-backup restore latest order --yes
# order_db's content fingerprint is taken before the backups and must be
# identical before (e) and after it; the script fails loudly otherwise.
# Untimed, at the end: the size of a single-stream gzip -6 of the same
# uncompressed dump, to tell the cost of (b)'s independent gzip members apart
# from what the seed's second compression gains.
# The markdown report goes to stdout, progress and tool logs to stderr.
# wall_NAME and rss_NAME are assigned by timed() through `read`, which
# static analysis cannot follow:
# shellcheck disable=SC2154
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
sandbox="$here/pg-sandbox.sh"
fixture="$root/tests/fixtures/order_db.sql"
tool="$root/target/release/valerix-backup"
docs="$root/docs/benchmarks.md"

size_mb=1000
write_docs=0
keep=0
while [ $# -gt 0 ]; do
  case "$1" in
    --size-mb) size_mb=${2:?--size-mb needs a number}; shift 2 ;;
    --size-mb=*) size_mb=${1#*=}; shift ;;
    --write-docs) write_docs=1; shift ;;
    --keep) keep=1; shift ;;
    -h|--help) sed -n '2,/^# The markdown report/p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "bench: unknown argument $1 (try --help)" >&2; exit 2 ;;
  esac
done
case "$size_mb" in ''|*[!0-9]*) echo "bench: --size-mb wants a whole number" >&2; exit 2 ;; esac

# The sandbox's fixed test credentials. They reach the tools only through the
# environment (PGPASSWORD, or the config's password_env), never argv.
export ORDER_DB_PASSWORD=order_password

log() { printf 'bench: %s\n' "$*" >&2; }
die() { printf 'bench: FAILED: %s\n' "$*" >&2; exit 1; }
# Floating point arithmetic: calc 'EXPR' [printf format].
calc() { awk "BEGIN { printf \"${2:-%.2f}\", $1 }"; }
mib() { calc "$1 / 1048576" "${2:-%.1f}"; }

# ---------------------------------------------------------------- setup

work=""
cleanup() {
  local rc=$?
  if [ -n "$work" ] && [ -d "$work" ]; then
    "$sandbox" stop "$work/pg" >/dev/null 2>&1 || true
    if [ "$keep" -eq 1 ]; then log "kept $work"; else rm -rf "$work"; fi
  fi
  [ "$rc" -eq 0 ] || log "exit status $rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

prepare() {
  "$here/setup.sh"
  log "cargo build --release"
  (cd "$root" && cargo build --release --quiet)
  [ -x "$tool" ] || die "no $tool after the build"

  # The same PostgreSQL binaries for the seed procedure and for the tool.
  # shellcheck disable=SC2012 # the same lookup as pg-sandbox.sh
  pg_bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
  export PATH="$pg_bin:$PATH"

  work=$(mktemp -d /tmp/valerix-bench.XXXXXX)
  chmod 755 "$work" # the server runs as postgres and needs to reach $work/pg
  mkdir -p "$work/seed" "$work/tool"
  port=$("$sandbox" free-port)
  log "sandbox cluster in $work/pg on 127.0.0.1:$port"
  "$sandbox" start "$work/pg" "$port"

  cat >"$work/tool/valerix-backup.toml" <<TOML
backup_dir = "backups"
retention_days = 7
pg_bin_dir = "$pg_bin"

[[database]]
name = "order"
dbname = "order_db"
host = "127.0.0.1"
port = $port
user = "order_user"
password_env = "ORDER_DB_PASSWORD"
TOML
  cfg="$work/tool/valerix-backup.toml"
}

# Superuser psql on the sandbox's Unix socket, unaligned, no headers.
sq() { "$sandbox" psql "$work/pg" "$port" -q -At -v ON_ERROR_STOP=1 "$@"; }

# Loads the order fixture into DB at SCALE, as its owner (like pg-sandbox seed).
load_order_fixture() {
  PGOPTIONS="-c role=order_user" \
    sq -d "$1" -v scale="$2" -f "$fixture"
}

db_size() { sq -d postgres -c "SELECT pg_database_size('$1')"; }

# Bytes per scale unit, measured by loading the fixture at a small scale into
# a scratch database: cheaper and more honest than a guessed constant.
calibrate() {
  local calib_scale=20000 empty full
  sq -d postgres -c "CREATE DATABASE calib_db OWNER order_user"
  empty=$(db_size calib_db)
  load_order_fixture calib_db "$calib_scale"
  sq -d calib_db -c "VACUUM ANALYZE"
  full=$(db_size calib_db)
  sq -d postgres -c "DROP DATABASE calib_db"
  per_unit=$(calc "($full - $empty) / $calib_scale" '%.0f')
  scale=$(calc "($size_mb * 1000000 - $empty) / $per_unit" '%.0f')
  [ "$scale" -ge 200 ] || scale=200
  log "calibration: $per_unit bytes per scale unit (empty db $empty bytes) -> scale $scale for $size_mb MB"
}

# The seed's roles and both databases at the small default scale (reusing
# pg-sandbox.sh), then order_db alone reloaded at the benchmark scale:
# inventory_db plays no part here, so it need not be big.
seed() {
  "$sandbox" seed "$work/pg" "$port" 200
  calibrate
  log "loading order_db at scale $scale (this is the slow part)"
  local t0=$SECONDS
  sq -d postgres -c "DROP DATABASE order_db" -c "CREATE DATABASE order_db OWNER order_user"
  load_order_fixture order_db "$scale"
  # VACUUM sets hint bits and the visibility map now, so that no timed step
  # pays for them; the checkpoint flushes the load's dirty buffers.
  sq -d order_db -c "VACUUM ANALYZE"
  sq -d postgres -c "CHECKPOINT"
  db_bytes=$(db_size order_db)
  log "order_db: $(mib "$db_bytes") MiB after $((SECONDS - t0)) s"
}

# Content fingerprint of order_db: per table its row count and the md5 of its
# rows' md5s in sorted order (independent of physical row order), the state
# of every sequence, and the definitions of indexes, constraints and views.
fingerprint() {
  sq -d order_db <<'SQL'
SELECT format('SELECT %L, count(*), md5(coalesce(string_agg(h, '''' ORDER BY h), '''')) '
              'FROM (SELECT md5(t::text) AS h FROM %I.%I t) s',
              c.relname, n.nspname, c.relname)
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = 'public' AND c.relkind = 'r' ORDER BY c.relname
\gexec
SELECT format('SELECT %L, last_value, is_called FROM %I.%I', c.relname, n.nspname, c.relname)
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = 'public' AND c.relkind = 'S' ORDER BY c.relname
\gexec
SELECT 'index', indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' ORDER BY 2;
SELECT 'constraint', conrelid::regclass::text AS tbl, conname, pg_get_constraintdef(oid)
FROM pg_constraint WHERE connamespace = 'public'::regnamespace ORDER BY tbl, conname;
SELECT 'view', viewname, md5(definition) FROM pg_views WHERE schemaname = 'public' ORDER BY 2;
SQL
}

# Compares order_db's fingerprint now with the one taken before the backups.
check_fingerprint() {
  local when=$1
  fingerprint >"$work/fingerprint.$when"
  if ! diff -u "$work/fingerprint.before" "$work/fingerprint.$when" >&2; then
    die "order_db $when differs from order_db before the backups (diff above)"
  fi
  log "fingerprint $when: identical to before the backups"
}

# ---------------------------------------------------------------- timing

# timed NAME CMD...: runs CMD under GNU time; wall_NAME and rss_NAME (KiB)
# hold the result. %M is Linux's ru_maxrss of the child: the larger of the
# child's own peak RSS and that of its largest waited-for descendant.
timed() {
  local name=$1 rc=0; shift
  /usr/bin/time -f '%e %M' -o "$work/time.$name" "$@" || rc=$?
  read -r "wall_$name" "rss_$name" < <(tail -n 1 "$work/time.$name")
  return "$rc"
}

# Flushes files and the server's dirty buffers between steps, so that no step
# pays for the previous one's writes.
settle() {
  sync
  sq -d postgres -c "CHECKPOINT"
}

# The seed's connection options, as its scripts passed them.
seed_conn=()

# Before each restore: order_db must exist, be vacuumed and analyzed (as it
# was after seeding, and as (d) leaves it not) and have no session in it.
# Without this, autovacuum works through the tables (d) has just loaded while
# (e) runs, and valerix-backup's swap fails: as order_user it cannot
# terminate the autovacuum worker ("must be a superuser to terminate
# superuser process"). That is a finding about the tool, reported as such;
# here it would only stop the measurement.
quiesce() {
  local sessions i
  [ "$(sq -d postgres -c "SELECT count(*) FROM pg_database WHERE datname = 'order_db'")" = 1 ] \
    || die "order_db does not exist before a restore"
  sessions=$(other_sessions)
  [ -z "$sessions" ] || log "sessions in order_db before VACUUM: $sessions"
  sq -d order_db -c "VACUUM ANALYZE"
  for i in $(seq 1 120); do
    sessions=$(other_sessions)
    [ -n "$sessions" ] || return 0
    [ "$i" -gt 1 ] || log "waiting for sessions in order_db to end: $sessions"
    sleep 1
  done
  die "sessions still in order_db after 120 s: $sessions"
}

other_sessions() {
  sq -d postgres -c "SELECT string_agg(backend_type || ' (' || coalesce(usename, '-') || ', '
                       || coalesce(state, '-') || ': ' || left(coalesce(query, ''), 60) || ')', '; ')
                     FROM pg_stat_activity WHERE datname = 'order_db'"
}

# (a) The seed backup: pg_dump's own zlib compression, then gzip on top.
step_a() {
  log "(a) seed backup: pg_dump --format=custom, then gzip"
  settle
  PGPASSWORD="$ORDER_DB_PASSWORD" timed a_dump \
    pg_dump "${seed_conn[@]}" -d order_db --format=custom --file="$work/seed/order_db.dump"
  size_a_dump=$(stat -c %s "$work/seed/order_db.dump")
  timed a_gzip gzip "$work/seed/order_db.dump"
  wall_a=$(calc "$wall_a_dump + $wall_a_gzip")
  rss_a=$(( rss_a_dump > rss_a_gzip ? rss_a_dump : rss_a_gzip ))
  size_a=$(stat -c %s "$work/seed/order_db.dump.gz")
}

# (b) valerix-backup: pg_dump -Z0 streamed through a parallel gzip.
step_b() {
  log "(b) valerix-backup backup order"
  settle
  timed b "$tool" -c "$cfg" --no-progress backup order --json \
    >"$work/b.json" 2>"$work/b.log" || { cat "$work/b.log" >&2; die "valerix-backup backup"; }
  sed 's/^/    | /' "$work/b.log" >&2
  read -r file_b size_b stream_b < <(python3 -c '
import json, sys
m = json.load(open(sys.argv[1]))["results"][0]["manifest"]
print(m["file"], m["size_bytes"], m["uncompressed_bytes"])' "$work/b.json")
  [ "$(stat -c %s "$work/tool/backups/$file_b")" -eq "$size_b" ] \
    || die "$file_b's size on disk differs from its manifest"
  # Cross-check with the tool's own listing.
  "$tool" -c "$cfg" list order --json | python3 -c '
import json, sys
e = json.load(sys.stdin)
assert len(e) == 1 and e[0]["state"] == "ok", e
' || die "valerix-backup list does not show exactly one good backup"
}

# (c) The floor: what pg_dump alone costs, without any compression or disk.
step_c() {
  log "(c) floor: pg_dump --format=custom --compress=0 > /dev/null"
  settle
  PGPASSWORD="$ORDER_DB_PASSWORD" timed c \
    pg_dump "${seed_conn[@]}" -d order_db --format=custom --compress=0 >/dev/null
}

# (d) The seed restore, as order_user: decompress, drop, recreate, serial load.
step_d() {
  log "(d) seed restore: gunzip -k, dropdb, createdb, pg_restore"
  quiesce
  settle
  local dump="$work/seed/order_db.dump"
  export PGPASSWORD="$ORDER_DB_PASSWORD"
  timed d_gunzip gunzip -k "$dump.gz"
  # As in the seed's script, a failure to terminate is ignored (|| true).
  timed d_term psql -X -q "${seed_conn[@]}" -d postgres -o /dev/null \
    -c "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname='order_db'" || true
  timed d_drop dropdb "${seed_conn[@]}" --if-exists order_db
  timed d_create createdb "${seed_conn[@]}" order_db
  timed d_restore pg_restore "${seed_conn[@]}" -d order_db --no-owner --no-privileges "$dump"
  unset PGPASSWORD
  wall_d_prep=$(calc "$wall_d_term + $wall_d_drop + $wall_d_create")
  wall_d=$(calc "$wall_d_gunzip + $wall_d_prep + $wall_d_restore")
  rss_d=$(printf '%s\n' "$rss_d_gunzip" "$rss_d_term" "$rss_d_drop" "$rss_d_create" "$rss_d_restore" | sort -n | tail -n 1)
  rm -f "$dump"
}

# (e) valerix-backup restore: verify into a seekable scratch file, parallel
# pg_restore into a fresh database, row counts, then the swap.
step_e() {
  log "(e) valerix-backup restore latest order --yes"
  quiesce
  settle
  timed e "$tool" -c "$cfg" --no-progress restore latest order --yes --json \
    >"$work/e.json" 2>"$work/e.log" || { cat "$work/e.log" >&2; die "valerix-backup restore"; }
  sed 's/^/    | /' "$work/e.log" >&2
  read -r e_ok e_verify e_load e_swap e_total < <(python3 -c '
import json, sys
r = json.load(open(sys.argv[1]))["results"][0]
print(r["ok"], r["verify_secs"], r["restore_secs"], r["swap_secs"], r["total_secs"])' "$work/e.json")
  [ "$e_ok" = True ] || die "valerix-backup restore reported failure: $(cat "$work/e.json")"
}

# Untimed: what one plain `gzip -6` stream makes of (b)'s uncompressed dump.
# Against (b) it shows the cost of independent members; against (a) what the
# seed's second compression of already-compressed data gains.
size_reference() {
  log "size reference: gzip -6 of (b)'s uncompressed dump as a single stream"
  size_ref=$(gzip -dc "$work/tool/backups/$file_b" | gzip -6 | wc -c)
}

# ---------------------------------------------------------------- report

verdict() { if awk "BEGIN { exit !($1) }"; then echo PASS; else echo FAIL; fi; }

report() {
  local pg_server cpu mem commit
  pg_server=$(sq -d postgres -c "SHOW server_version")
  cpu=$(lscpu | sed -n 's/^Model name: *//p' | head -n 1)
  mem=$(awk '/^MemTotal:/ { printf "%.0f", $2 / 1048576 }' /proc/meminfo)
  commit=$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)
  [ -z "$(git -C "$root" status --porcelain -- src Cargo.toml Cargo.lock 2>/dev/null)" ] \
    || commit="$commit + uncommitted changes in src/"

  local r_wall_b r_size_b r_wall_e r_b_c rss_own_note
  if [ "$rss_b" -gt "$rss_c" ]; then
    rss_own_note="(b) is above it, so (b)'s figure is valerix-backup's own peak"
  else
    rss_own_note="(b) is not above it, so valerix-backup's own peak is at most (b)'s figure"
  fi
  r_wall_b=$(calc "$wall_b / $wall_a")
  r_size_b=$(calc "$size_b / $size_a" '%.3f')
  r_wall_e=$(calc "$wall_e / $wall_d")
  r_b_c=$(calc "$wall_b / $wall_c")

  cat <<EOF
## Latest run

- Date: $(date -u)
- Machine: $(nproc) cores (nproc), ${cpu:-unknown CPU}, ${mem} GiB RAM, $(sed -n 's/^PRETTY_NAME="\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' /etc/os-release)
- PostgreSQL: server $pg_server, $(pg_dump --version)
- valerix-backup: $("$tool" --version), commit $commit; defaults (gzip level 6, $(nproc) compression threads, pg_restore --jobs $(nproc))
- order_db: scale $scale (customers $scale, orders $((5 * scale)), order_items $((15 * scale)), invoices $((5 * scale / 2))),
  pg_database_size $(mib "$db_bytes") MiB ($(calc "$db_bytes / 1000000" %.0f) MB); uncompressed custom-format dump $(mib "$stream_b") MiB
- Run: \`scripts/bench.sh --size-mb $size_mb\`; warm page cache, one run per step, in the order below

| step | wall s | output MiB | peak RSS MiB | vs seed |
|---|---:|---:|---:|---|
| (a) seed backup: \`pg_dump -Fc --file\`, then \`gzip\` | $wall_a | $(mib "$size_a" %.2f) | $(calc "$rss_a / 1024" %.1f) | 1 |
| (b) \`valerix-backup backup order\` | $wall_b | $(mib "$size_b" %.2f) | $(calc "$rss_b / 1024" %.1f) | wall ${r_wall_b} x (a), size ${r_size_b} x (a) |
| (c) floor: \`pg_dump -Fc --compress=0 > /dev/null\` | $wall_c | - | $(calc "$rss_c / 1024" %.1f) | (b) takes ${r_b_c} x (c) |
| (d) seed restore: \`gunzip -k\`, \`dropdb\`, \`createdb\`, serial \`pg_restore\` | $wall_d | - | $(calc "$rss_d / 1024" %.1f) | 1 |
| (e) \`valerix-backup restore latest order --yes\` | $wall_e | - | $(calc "$rss_e / 1024" %.1f) | wall ${r_wall_e} x (d) |

Breakdown: (a) pg_dump ${wall_a_dump} s (writes $(mib "$size_a_dump" %.2f) MiB) + gzip ${wall_a_gzip} s (to $(mib "$size_a" %.2f) MiB);
(d) gunzip ${wall_d_gunzip} s + terminate/dropdb/createdb ${wall_d_prep} s + pg_restore ${wall_d_restore} s;
(e) as the tool reports it (\`--json\`): verify $(calc "$e_verify" %.1f) s + load $(calc "$e_load" %.1f) s + swap $(calc "$e_swap" %.2f) s = $(calc "$e_total" %.1f) s.

Size reference (untimed): a single-stream \`gzip -6\` of the same uncompressed
dump is $(mib "$size_ref" %.2f) MiB. (b) is $(calc "$size_b / $size_ref" %.3f) x that (the cost of independent
gzip members); (a) is $(calc "$size_a / $size_ref" %.3f) x that (what gzip over pg_dump's zlib output gains).

Peak RSS is GNU time's %M, Linux's ru_maxrss of the timed process: the larger
of its own peak and that of its largest waited-for descendant. For (b) that is
max(valerix-backup, pg_dump), and pg_dump alone peaks at (c)'s figure
($rss_own_note); for (e)
it is max(valerix-backup, pg_restore and its workers). For (a) and (d) it is
the largest of the separately timed commands.

| target | measured | limit | result |
|---|---:|---:|---|
| (b) wall <= 0.5 x (a) wall | ${r_wall_b} x | 0.5 x | $(verdict "$wall_b <= 0.5 * $wall_a") |
| size (b) <= 1.05 x size (a) | ${r_size_b} x | 1.05 x | $(verdict "$size_b <= 1.05 * $size_a") |
| (b) peak RSS < 64 MiB | $(calc "$rss_b / 1024" %.1f) MiB | 64 MiB | $(verdict "$rss_b < 65536") |
| (e) wall <= 0.8 x (d) wall | ${r_wall_e} x | 0.8 x | $(verdict "$wall_e <= 0.8 * $wall_d") |

Content check: order_db's fingerprint (per-table row count and md5 of sorted
row md5s, sequences, index/constraint/view definitions) was identical before
the backups, after (d) and after (e).
EOF
}

# Replaces docs/benchmarks.md's "## Latest run" section (up to the next "## "
# heading) with the report; writes the introduction when the file is new.
write_docs() {
  printf '%s\n' "$1" >"$work/section.md"
  if [ ! -f "$docs" ]; then
    mkdir -p "$(dirname "$docs")"
    cat >"$docs" <<'EOF'
# Benchmarks

`scripts/bench.sh` compares valerix-backup with the shell procedure it
replaces, on a private PostgreSQL cluster (`scripts/pg-sandbox.sh`) holding an
`order_db` loaded from `tests/fixtures/order_db.sql` at a scale giving about
1 GB. `scripts/bench.sh --write-docs` refreshes the section below.

The steps, one after the other in one run:

- **(a) seed backup**: `pg_dump --format=custom --file=X.dump`, then
  `gzip X.dump`. The data is compressed twice: pg_dump's custom format is
  already zlib-compressed, so gzip spends a second full pass on a file it can
  hardly shrink. Both compressions run on one core.
- **(b) `valerix-backup backup order`**: `pg_dump --format=custom --compress=0`
  streamed through a parallel gzip (level 6, one thread per core) that writes
  independent gzip members, hashed (SHA-256) and row-counted in the same pass.
  Compression, not pg_dump, is the bottleneck of a backup, so it is done once
  and on every core.
- **(c) floor**: `pg_dump --format=custom --compress=0 > /dev/null`, the
  cost of reading the database at all; no backup can be faster.
- **(d) seed restore**: `gunzip -k`, terminate sessions, `dropdb`,
  `createdb`, then a serial `pg_restore --no-owner --no-privileges`. The live
  database is gone before the new one is loaded.
- **(e) `valerix-backup restore latest order --yes`**: checks the file first
  (SHA-256 against the manifest, full gunzip into a seekable scratch file;
  pg_restore `--jobs` needs a seekable archive, which a pipe is not), loads a
  fresh database with `pg_restore --jobs` (one per core), compares row counts,
  then swaps names with the live database and drops the old one.

Before (e) and after it, the script compares `order_db`'s content fingerprint
with the one taken before the backups and fails if it differs.

EOF
  fi
  local new="$docs.tmp.$$"
  awk -v section_file="$work/section.md" '
    function emit() { while ((getline line < section_file) > 0) print line; done = 1 }
    /^## Latest run/ { emit(); skipping = 1; next }
    skipping && /^## / { skipping = 0; print ""; }
    !skipping { print }
    END { if (!done) emit() }
  ' "$docs" >"$new" || { rm -f "$new"; die "writing $docs"; }
  mv "$new" "$docs"
  log "wrote $docs"
}

# ---------------------------------------------------------------- main

main() {
  prepare
  seed_conn=(-h 127.0.0.1 -p "$port" -U order_user)
  seed
  fingerprint >"$work/fingerprint.before"
  log "fingerprint before the backups:"
  sed 's/^/    | /' "$work/fingerprint.before" >&2

  step_a
  step_b
  step_c
  step_d
  check_fingerprint after-d
  step_e
  check_fingerprint after-e
  size_reference

  local section
  section=$(report)
  printf '%s\n' "$section"
  [ "$write_docs" -eq 0 ] || write_docs "$section"
}

main
