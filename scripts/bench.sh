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
set -euo pipefail

bench_name=bench
declare -A opt=([size-mb]=1000)
# shellcheck source=scripts/lib/bench.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/bench.sh"
parse_args "$@"
size_mb=${opt[size-mb]}

sandbox="$here/pg-sandbox.sh"
fixture="$root/tests/fixtures/order_db.sql"

# The sandbox's fixed test credentials. They reach the tools only through the
# environment (PGPASSWORD, or the config's password_env), never argv.
export ORDER_DB_PASSWORD=order_password

# ---------------------------------------------------------------- setup

on_cleanup() { "$sandbox" stop "$work/pg" >/dev/null 2>&1; }

prepare() {
  prepare_common valerix-bench
  # The same PostgreSQL binaries for the seed procedure and for the tool.
  # shellcheck disable=SC2012 # the same lookup as pg-sandbox.sh
  pg_bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
  export PATH="$pg_bin:$PATH"

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

# ---------------------------------------------------------------- steps

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
  in_sequence a a_dump a_gzip
  size_a=$(stat -c %s "$work/seed/order_db.dump.gz")
}

# (b) valerix-backup: pg_dump -Z0 streamed through a parallel gzip.
step_b() {
  local vals
  log "(b) valerix-backup backup order"
  settle
  timed b "$tool" -c "$cfg" --no-progress backup order --json \
    >"$work/b.json" 2>"$work/b.log" || { cat "$work/b.log" >&2; die "valerix-backup backup"; }
  show_log "$work/b.log"
  vals=$(json_values '.results[0].manifest | .file, .size_bytes, .uncompressed_bytes' "$work/b.json") \
    || die "valerix-backup backup: unexpected report"
  read -r file_b size_b stream_b <<<"$vals"
  [ "$(stat -c %s "$work/tool/backups/$file_b")" -eq "$size_b" ] \
    || die "$file_b's size on disk differs from its manifest"
  check_one_good_backup "$cfg" # the tool's own listing agrees
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
  in_sequence d_prep d_term d_drop d_create
  in_sequence d d_gunzip d_prep d_restore
  rm -f "$dump"
}

# (e) valerix-backup restore: verify into a seekable scratch file, parallel
# pg_restore into a fresh database, row counts, then the swap.
step_e() {
  local vals
  log "(e) valerix-backup restore latest order --yes"
  quiesce
  settle
  timed e "$tool" -c "$cfg" --no-progress restore latest order --yes --json \
    >"$work/e.json" 2>"$work/e.log" || { cat "$work/e.log" >&2; die "valerix-backup restore"; }
  show_log "$work/e.log"
  vals=$(json_values '.results[0] | .ok, .verify_secs, .restore_secs, .swap_secs, .total_secs' "$work/e.json") \
    || die "valerix-backup restore: unexpected report"
  read -r e_ok e_verify e_load e_swap e_total <<<"$vals"
  [ "$e_ok" = true ] || die "valerix-backup restore reported failure: $(cat "$work/e.json")"
}

# Untimed: what one plain `gzip -6` stream makes of (b)'s uncompressed dump.
# Against (b) it shows the cost of independent members; against (a) what the
# seed's second compression of already-compressed data gains.
size_reference() {
  log "size reference: gzip -6 of (b)'s uncompressed dump as a single stream"
  size_ref=$(gzip -dc "$work/tool/backups/$file_b" | gzip -6 | wc -c)
}

# ---------------------------------------------------------------- report

report() {
  local pg_server rss_own_note r_wall_b r_size_b r_wall_e r_b_c
  pg_server=$(sq -d postgres -c "SHOW server_version")
  if [ "${rss[b]}" -gt "${rss[c]}" ]; then
    rss_own_note="(b) is above it, so (b)'s figure is valerix-backup's own peak"
  else
    rss_own_note="(b) is not above it, so valerix-backup's own peak is at most (b)'s figure"
  fi
  r_wall_b=$(calc "${wall[b]} / ${wall[a]}")
  r_size_b=$(calc "$size_b / $size_a" '%.3f')
  r_wall_e=$(calc "${wall[e]} / ${wall[d]}")
  r_b_c=$(calc "${wall[b]} / ${wall[c]}")

  cat <<EOF
## Latest run

- Date: $(date -u)
- Machine: $(machine)
- PostgreSQL: server $pg_server, $(pg_dump --version)
- valerix-backup: $("$tool" --version), commit $(commit); defaults (gzip level 6, $(nproc) compression threads, pg_restore --jobs $(nproc))
- order_db: scale $scale (customers $scale, orders $((5 * scale)), order_items $((15 * scale)), invoices $((5 * scale / 2))),
  pg_database_size $(mib "$db_bytes") MiB ($(calc "$db_bytes / 1000000" %.0f) MB); uncompressed custom-format dump $(mib "$stream_b") MiB
- Run: \`scripts/bench.sh --size-mb $size_mb\`; warm page cache, one run per step, in the order below

| step | wall s | output MiB | peak RSS MiB | vs seed |
|---|---:|---:|---:|---|
| (a) seed backup: \`pg_dump -Fc --file\`, then \`gzip\` | ${wall[a]} | $(mib "$size_a" %.2f) | $(kib_mib "${rss[a]}") | 1 |
| (b) \`valerix-backup backup order\` | ${wall[b]} | $(mib "$size_b" %.2f) | $(kib_mib "${rss[b]}") | wall ${r_wall_b} x (a), size ${r_size_b} x (a) |
| (c) floor: \`pg_dump -Fc --compress=0 > /dev/null\` | ${wall[c]} | - | $(kib_mib "${rss[c]}") | (b) takes ${r_b_c} x (c) |
| (d) seed restore: \`gunzip -k\`, \`dropdb\`, \`createdb\`, serial \`pg_restore\` | ${wall[d]} | - | $(kib_mib "${rss[d]}") | 1 |
| (e) \`valerix-backup restore latest order --yes\` | ${wall[e]} | - | $(kib_mib "${rss[e]}") | wall ${r_wall_e} x (d) |

Breakdown: (a) pg_dump ${wall[a_dump]} s (writes $(mib "$size_a_dump" %.2f) MiB) + gzip ${wall[a_gzip]} s (to $(mib "$size_a" %.2f) MiB);
(d) gunzip ${wall[d_gunzip]} s + terminate/dropdb/createdb ${wall[d_prep]} s + pg_restore ${wall[d_restore]} s;
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
| (b) wall <= 0.5 x (a) wall | ${r_wall_b} x | 0.5 x | $(verdict "${wall[b]} <= 0.5 * ${wall[a]}") |
| size (b) <= 1.05 x size (a) | ${r_size_b} x | 1.05 x | $(verdict "$size_b <= 1.05 * $size_a") |
| (b) peak RSS < 64 MiB | $(kib_mib "${rss[b]}") MiB | 64 MiB | $(verdict "${rss[b]} < 65536") |
| (e) wall <= 0.8 x (d) wall | ${r_wall_e} x | 0.8 x | $(verdict "${wall[e]} <= 0.8 * ${wall[d]}") |

Content check: order_db's fingerprint (per-table row count and md5 of sorted
row md5s, sequences, index/constraint/view definitions) was identical before
the backups, after (d) and after (e).
EOF
}

# ---------------------------------------------------------------- main

main() {
  prepare
  seed_conn=(-h 127.0.0.1 -p "$port" -U order_user)
  seed
  fingerprint >"$work/fingerprint.before"
  log "fingerprint before the backups:"
  show_log "$work/fingerprint.before"

  step_a
  step_b
  step_c
  step_d
  check_fingerprint after-d
  step_e
  check_fingerprint after-e
  size_reference

  emit_report "## Latest run" "$(report)"
}

main
