#!/usr/bin/env bash
# Benchmark: valerix-backup against the shell procedure it replaces and
# against the physical floor, on a private PostgreSQL cluster holding an
# order_db of about --size-mb MB.
#
#   scripts/bench.sh [--size-mb N] [--dataset order|commerce] [--rounds N]
#                    [--write-docs] [--keep]
#
#   --size-mb N    target pg_database_size of order_db in MB (default 1000)
#   --dataset D    what order_db holds (default order):
#                  order     tests/fixtures/order_db.sql, the test suite's
#                            order database (4 tables, btree and gin indexes)
#                  commerce  tests/fixtures/commerce_db.sql, an order and
#                            inventory system with enums, uuid, ranges,
#                            arrays, a partitioned table, partial, expression,
#                            hash, BRIN, GiST and trigram indexes, triggers
#                            and a materialized view
#   --rounds N     rounds of all steps, alternating (default 3); every figure
#                  is the median of its N runs
#   --write-docs   also replace this data set's "Latest run" section of
#                  docs/benchmarks.md
#   --keep         keep the work directory (dumps, logs, fingerprints) for
#                  inspection; the sandbox cluster itself is always deleted
#
# Steps, each under GNU time (wall, peak RSS, CPU), in this order in every
# round, so that no step always runs on a cache another one warmed:
#   (a) seed backup:   pg_dump --format=custom --file=X.dump, then gzip X.dump
#   (b) valerix-backup backup order
#   (c) backup floor:  pg_dump --format=custom --compress=0 > /dev/null
#   (d) seed restore:  gunzip -k, terminate, dropdb, createdb, serial pg_restore
#   (e) valerix-backup restore latest order --yes
#   (f) restore floor: pg_restore --jobs N of (b)'s archive, already
#       inflated and with its data offsets written in, into an empty
#       database: no checks, no decompression
#   (g) valerix-backup verify --deep latest order
#   (h) valerix-backup backup order, encrypted ([encryption] recipients, a
#       key made by age-keygen), into its own backup directory
#   (i) valerix-backup restore latest order --yes of (h)'s backup, with its
#       identity
# order_db's content fingerprint is taken before the backups and must be
# identical after every (d), (e) and (i); the script fails loudly otherwise.
# Untimed, at the end: the size of a single-stream gzip -6 of the same
# uncompressed dump, to tell the cost of (b)'s independent gzip members apart
# from what the seed's second compression gains.
# The markdown report goes to stdout, progress and tool logs to stderr.
set -euo pipefail

bench_name=bench
declare -A opt=([size-mb]=1000 [dataset]=order [rounds]=3)
declare -A choices=([dataset]="order commerce")
# shellcheck source=scripts/lib/bench.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/bench.sh"
parse_args "$@"
# Built with the release binary (scripts/lib/bench.sh): the floor's archive.
archive_tool="$root/target/release/examples/archive_tool"
size_mb=${opt[size-mb]}
dataset=${opt[dataset]}
rounds=${opt[rounds]}
[ "$rounds" -gt 0 ] || usage_error "--rounds wants a positive whole number"

sandbox="$here/pg-sandbox.sh"
fixture="$root/tests/fixtures/${dataset}_db.sql"
case "$dataset" in
  order) heading="## Latest run" ;;
  *) heading="## Latest run ($dataset data set)" ;;
esac

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
  clk_tck=$(getconf CLK_TCK)
  timed_probe=server_cpu

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

  # (h) and (i): the same backups, encrypted to a key of their own.
  mkdir -p "$work/enc"
  age-keygen -o "$work/enc/key.txt" 2>/dev/null
  { cat "$cfg"; printf '\n[encryption]\nrecipients = ["%s"]\nidentity_file = "key.txt"\n' \
      "$(age-keygen -y "$work/enc/key.txt")"; } >"$work/enc/valerix-backup.toml"
  cfg_enc="$work/enc/valerix-backup.toml"
}

# CPU seconds the cluster has used so far (timed's probe): the postmaster
# and every process under it, and through the postmaster's children's
# times the backends that have ended (parallel workers, autovacuum, a
# pg_restore's sessions).
server_cpu() {
  local pm
  pm=$(head -n 1 "$work/pg/data/postmaster.pid")
  # A child that ends between pgrep and cat is counted through the
  # postmaster's cutime/cstime instead: cat's failure on it is no error.
  # shellcheck disable=SC2046 # one /proc path per child pid
  { cat "/proc/$pm/stat" $(pgrep -P "$pm" | sed 's|.*|/proc/&/stat|') 2>/dev/null || true; } \
    | awk -v t="$clk_tck" -v pm="$pm" '{ pid = $1; sub(/^.*\) /, ""); s += $12 + $13
                                        if (pid == pm) s += $14 + $15 } END { printf "%.2f", s / t }'
}

# Superuser psql on the sandbox's Unix socket, unaligned, no headers.
sq() { "$sandbox" psql "$work/pg" "$port" -q -At -v ON_ERROR_STOP=1 "$@"; }

# Loads the data set's fixture into DB at SCALE, as its owner (like
# pg-sandbox seed).
load_fixture() {
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
  load_fixture calib_db "$calib_scale"
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
  log "loading order_db ($dataset data set) at scale $scale (this is the slow part)"
  local t0=$SECONDS
  sq -d postgres -c "DROP DATABASE order_db" -c "CREATE DATABASE order_db OWNER order_user"
  load_fixture order_db "$scale"
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
WHERE n.nspname = 'public' AND c.relkind IN ('r', 'm') ORDER BY c.relname
\gexec
SELECT format('SELECT %L, last_value, is_called FROM %I.%I', c.relname, n.nspname, c.relname)
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = 'public' AND c.relkind = 'S' ORDER BY c.relname
\gexec
SELECT 'index', indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' ORDER BY 2;
SELECT 'constraint', conrelid::regclass::text AS tbl, conname, pg_get_constraintdef(oid)
FROM pg_constraint WHERE connamespace = 'public'::regnamespace ORDER BY tbl, conname;
SELECT 'view', viewname, md5(definition) FROM pg_views WHERE schemaname = 'public' ORDER BY 2;
SELECT 'matview', matviewname, md5(definition) FROM pg_matviews WHERE schemaname = 'public' ORDER BY 2;
SELECT 'trigger', tgrelid::regclass::text AS tbl, tgname, pg_get_triggerdef(oid)
FROM pg_trigger WHERE NOT tgisinternal ORDER BY tbl, tgname;
SELECT 'type', t.typname, t.typtype, coalesce(string_agg(e.enumlabel, ',' ORDER BY e.enumsortorder), '')
FROM pg_type t LEFT JOIN pg_enum e ON e.enumtypid = t.oid
WHERE t.typnamespace = 'public'::regnamespace AND t.typtype IN ('e', 'd') GROUP BY 2, 3 ORDER BY 2;
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

# Every step_X takes the round's number R and times its commands as X<R>
# (its parts as PART<R>), which `alternate` turns into medians.

# (a) The seed backup: pg_dump's own zlib compression, then gzip on top.
step_a() {
  local r=$1
  settle
  rm -f "$work/seed/order_db.dump.gz"
  PGPASSWORD="$ORDER_DB_PASSWORD" timed "a_dump$r" \
    pg_dump "${seed_conn[@]}" -d order_db --format=custom --file="$work/seed/order_db.dump"
  size_a_dump=$(stat -c %s "$work/seed/order_db.dump")
  timed "a_gzip$r" gzip "$work/seed/order_db.dump"
  in_sequence "a$r" "a_dump$r" "a_gzip$r"
  size_a=$(stat -c %s "$work/seed/order_db.dump.gz")
}

# (b) valerix-backup: pg_dump -Z0 streamed through a parallel gzip. The
# previous round's backup is deleted first (untimed), so that every round
# writes the one backup that (e), (f) and (g) then read.
step_b() {
  tool_backup b "$1" "$cfg" "$work/tool/backups" "valerix-backup backup"
  file_b=$backup_file size_b=$backup_size stream_b=$backup_stream
  check_one_good_backup "$cfg" # the tool's own listing agrees
}

# tool_backup STEP ROUND CONFIG DIR WHAT: `backup order` with CONFIG into
# DIR, timed as STEP, after deleting the previous round's backup (untimed);
# sets backup_file, backup_size and backup_stream from its report.
tool_backup() {
  local run=$1$2 config=$3 dir=$4 what=$5 vals
  rm -f "$dir/"order_db_*
  settle
  timed "$run" "$tool" -c "$config" --no-progress backup order --json \
    >"$work/$run.json" 2>"$work/$run.log" || { cat "$work/$run.log" >&2; die "$what"; }
  show_log "$work/$run.log"
  vals=$(json_values '.results[0].manifest | .file, .size_bytes, .uncompressed_bytes' "$work/$run.json") \
    || die "$what: unexpected report"
  read -r backup_file backup_size backup_stream <<<"$vals"
  [ "$(stat -c %s "$dir/$backup_file")" -eq "$backup_size" ] \
    || die "$backup_file's size on disk differs from its manifest"
}

# (c) The backup floor: what pg_dump alone costs, without compression or disk.
step_c() {
  settle
  PGPASSWORD="$ORDER_DB_PASSWORD" timed "c$1" \
    pg_dump "${seed_conn[@]}" -d order_db --format=custom --compress=0 >/dev/null
}

# (d) The seed restore, as order_user: decompress, drop, recreate, serial load.
step_d() {
  local r=$1 dump="$work/seed/order_db.dump"
  quiesce
  settle
  export PGPASSWORD="$ORDER_DB_PASSWORD"
  timed "d_gunzip$r" gunzip -k "$dump.gz"
  # As in the seed's script, a failure to terminate is ignored (|| true).
  timed "d_term$r" psql -X -q "${seed_conn[@]}" -d postgres -o /dev/null \
    -c "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname='order_db'" || true
  timed "d_drop$r" dropdb "${seed_conn[@]}" --if-exists order_db
  timed "d_create$r" createdb "${seed_conn[@]}" order_db
  timed "d_restore$r" pg_restore "${seed_conn[@]}" -d order_db --no-owner --no-privileges "$dump"
  unset PGPASSWORD
  in_sequence "d_prep$r" "d_term$r" "d_drop$r" "d_create$r"
  in_sequence "d$r" "d_gunzip$r" "d_prep$r" "d_restore$r"
  rm -f "$dump"
  check_fingerprint "after-d$r"
}

# (e) valerix-backup restore: every check, the parallel load into a fresh
# database, row counts, then the swap.
step_e() { tool_restore e "$1" "$cfg" "valerix-backup restore"; }

# tool_restore STEP ROUND CONFIG WHAT: `restore latest order` with CONFIG,
# timed as STEP; the report must say ok and the fingerprint must hold.
tool_restore() {
  local run=$1$2 config=$3 what=$4 vals
  quiesce
  settle
  timed "$run" "$tool" -c "$config" --no-progress restore latest order --yes --json \
    >"$work/$run.json" 2>"$work/$run.log" || { cat "$work/$run.log" >&2; die "$what"; }
  show_log "$work/$run.log"
  vals=$(json_values '.results[0].ok' "$work/$run.json") || die "$what: unexpected report"
  [ "$vals" = true ] || die "$what reported failure: $(cat "$work/$run.json")"
  check_fingerprint "after-$run"
}

# (f) The restore floor: pg_restore --jobs of (b)'s archive, inflated and
# with its data offsets written in (both untimed), into an empty database
# (created untimed): what loading the data and building the indexes costs,
# with nothing checked. No restore that proves its archive first can be
# faster.
#
# pg_dump writing to a pipe, as every backup does, leaves the offsets unset,
# and pg_restore --jobs is slower without them; valerix-backup writes them
# into its scratch file before the load (src/pg/offsets.rs), so the floor's
# archive gets them too (examples/archive_tool.rs): the very bytes (e) loads.
floor_archive() {
  local dump=$1
  gzip -dc "$work/tool/backups/$file_b" >"$dump"
  "$archive_tool" fill-offsets "$dump" 2>&1 | sed 's/^/floor archive: /' >&2
}

step_f() {
  local r=$1 dump="$work/floor.dump"
  [ -f "$dump" ] || floor_archive "$dump"
  export PGPASSWORD="$ORDER_DB_PASSWORD"
  dropdb "${seed_conn[@]}" --if-exists floor_db
  createdb "${seed_conn[@]}" floor_db
  settle
  timed "f$r" pg_restore "${seed_conn[@]}" -d floor_db --no-owner --no-privileges \
    --jobs "$(nproc)" --exit-on-error "$dump" || die "the floor's pg_restore failed"
  dropdb "${seed_conn[@]}" floor_db
  unset PGPASSWORD
}

# (g) valerix-backup verify --deep: every check and a restore into a
# scratch database with row counts, the live database untouched.
step_g() {
  local r=$1 vals
  settle
  timed "g$r" "$tool" -c "$cfg" --no-progress verify --deep latest order --json \
    >"$work/g$r.json" 2>"$work/g$r.log" || { cat "$work/g$r.log" >&2; die "valerix-backup verify --deep"; }
  show_log "$work/g$r.log"
  vals=$(json_values '.results[0].ok' "$work/g$r.json") || die "valerix-backup verify: unexpected report"
  [ "$vals" = true ] || die "valerix-backup verify --deep reported failure: $(cat "$work/g$r.json")"
}

# (h) (b) encrypted: compress, then age, then hash, in the same pass.
step_h() {
  tool_backup h "$1" "$cfg_enc" "$work/enc/backups" "valerix-backup backup (encrypted)"
  file_h=$backup_file size_h=$backup_size
  case "$file_h" in *.dump.gz.age) ;; *) die "(h) wrote $file_h, not an encrypted backup" ;; esac
}

# (i) (e) of (h)'s encrypted backup, decrypted with its identity.
step_i() { tool_restore i "$1" "$cfg_enc" "valerix-backup restore (encrypted)"; }

# Untimed: what one plain `gzip -6` stream makes of (b)'s uncompressed dump.
# Against (b) it shows the cost of independent members; against (a) what the
# seed's second compression of already-compressed data gains.
size_reference() {
  log "size reference: gzip -6 of (b)'s uncompressed dump as a single stream"
  size_ref=$(gzip -dc "$work/tool/backups/$file_b" | gzip -6 | wc -c)
}

# ---------------------------------------------------------------- report

# The largest tables of order_db with their row counts, for the data line.
largest_tables() {
  sq -d order_db -c "SELECT string_agg(relname || ' ' || n_live_tup, ', ' ORDER BY n_live_tup DESC)
                     FROM (SELECT relname, n_live_tup FROM pg_stat_user_tables
                           ORDER BY n_live_tup DESC LIMIT 5) t"
}

# A table row: step, median wall, output, peak RSS, CPU, comparison.
row() {
  printf '| %s | %s | %s | %s | %s | %s | %s |\n' "$1" "${wall[$2]}" "$3" "$(kib_mib "${rss[$2]}")" \
    "${cpu[$2]}" "${probe[$2]}" "$4"
}

# Backquotes in the single-quoted step names are markdown, not commands.
# shellcheck disable=SC2016
report() {
  local pg_server rss_own_note r_wall_b r_size_b r_b_c r_wall_e r_e_f r_g_f r_f_d e_json
  local e_verify e_load e_swap e_total r_h_b r_i_e rss_h_limit
  pg_server=$(sq -d postgres -c "SHOW server_version")
  if [ "${rss[b]}" -gt "${rss[c]}" ]; then
    rss_own_note="(b) is above it, so (b)'s figure is valerix-backup's own peak"
  else
    rss_own_note="(b) is not above it, so valerix-backup's own peak is at most (b)'s figure"
  fi
  r_wall_b=$(calc "${wall[b]} / ${wall[a]}")
  r_size_b=$(calc "$size_b / $size_a" '%.3f')
  r_b_c=$(calc "${wall[b]} / ${wall[c]}")
  r_wall_e=$(calc "${wall[e]} / ${wall[d]}")
  r_e_f=$(calc "${wall[e]} / ${wall[f]}")
  r_g_f=$(calc "${wall[g]} / ${wall[f]}")
  r_f_d=$(calc "${wall[f]} / ${wall[d]}")
  r_h_b=$(calc "${wall[h]} / ${wall[b]}" '%.3f')
  r_i_e=$(calc "${wall[i]} / ${wall[e]}")
  rss_h_limit=$((rss[b] * 11 / 10))
  e_json="$work/${median_run[e]}.json"
  read -r e_verify e_load e_swap e_total <<<"$(json_values \
    '.results[0] | .verify_secs, .restore_secs, .swap_secs, .total_secs' "$e_json")"

  cat <<EOF
$heading

- Date: $(date -u)
- Machine: $(machine)
- PostgreSQL: server $pg_server, $(pg_dump --version)
- valerix-backup: $("$tool" --version), commit $(commit); defaults (gzip level 6, $(nproc) compression threads, pg_restore --jobs $(nproc))
- order_db: the $dataset data set (\`tests/fixtures/${dataset}_db.sql\`) at scale $scale; largest tables: $(largest_tables);
  pg_database_size $(mib "$db_bytes") MiB ($(calc "$db_bytes / 1000000" %.0f) MB); uncompressed custom-format dump $(mib "$stream_b") MiB
- Run: \`scripts/bench.sh --dataset $dataset --size-mb $size_mb --rounds $rounds\`; warm page cache; $rounds rounds of
  (a), (b), (h), (c), (d), (e), (i), (f), (g) in that order; every figure is the median of its $rounds runs, peak RSS the largest

| step | wall s | output MiB | peak RSS MiB | CPU s | server CPU s | vs |
|---|---:|---:|---:|---:|---:|---|
$(row '(a) seed backup: `pg_dump -Fc --file`, then `gzip`' a "$(mib "$size_a" %.2f)" 1)
$(row '(b) `valerix-backup backup order`' b "$(mib "$size_b" %.2f)" "wall ${r_wall_b} x (a), size ${r_size_b} x (a), ${r_b_c} x (c)")
$(row '(c) backup floor: `pg_dump -Fc --compress=0 > /dev/null`' c - "")
$(row '(d) seed restore: `gunzip -k`, `dropdb`, `createdb`, serial `pg_restore`' d - 1)
$(row '(e) `valerix-backup restore latest order --yes`' e - "wall ${r_wall_e} x (d), ${r_e_f} x (f)")
$(row "(f) restore floor: \`pg_restore --jobs $(nproc)\` of the inflated archive, offsets set" f - "${r_f_d} x (d)")
$(row '(g) `valerix-backup verify --deep latest order`' g - "${r_g_f} x (f)")
$(row '(h) (b), encrypted (`[encryption] recipients`)' h "$(mib "$size_h" %.2f)" "wall ${r_h_b} x (b), size $(calc "$size_h / $size_b" '%.4f') x (b)")
$(row '(i) (e) of (h)'"'"'s encrypted backup' i - "wall ${r_i_e} x (e)")

Runs (wall s, in order): (a) ${runs[a]}; (b) ${runs[b]}; (c) ${runs[c]}; (d) ${runs[d]}; (e) ${runs[e]}; (f) ${runs[f]}; (g) ${runs[g]}; (h) ${runs[h]}; (i) ${runs[i]}.

Breakdown (medians of each part): (a) pg_dump ${wall[a_dump]} s (writes $(mib "$size_a_dump" %.2f) MiB) + gzip ${wall[a_gzip]} s (to $(mib "$size_a" %.2f) MiB);
(d) gunzip ${wall[d_gunzip]} s + terminate/dropdb/createdb ${wall[d_prep]} s + pg_restore ${wall[d_restore]} s;
(e) as the tool reports its median run (\`--json\`): verify $(calc "$e_verify" %.1f) s + load $(calc "$e_load" %.1f) s + swap $(calc "$e_swap" %.2f) s = $(calc "$e_total" %.1f) s.

CPU bound of (b): its median run spent ${cpu[b]} CPU s in valerix-backup and pg_dump and
${probe[b]} CPU s in the server, $(calc "${cpu[b]} + ${probe[b]}") CPU s on $(nproc) cores: no run can take less than
$(calc "(${cpu[b]} + ${probe[b]}) / $(nproc)") s of wall ($(calc "(${cpu[b]} + ${probe[b]}) / $(nproc) / ${wall[c]}") x (c)). (c) spent ${probe[c]} server CPU s in ${wall[c]} s.

Size reference (untimed): a single-stream \`gzip -6\` of the same uncompressed
dump is $(mib "$size_ref" %.2f) MiB. (b) is $(calc "$size_b / $size_ref" %.3f) x that (the cost of independent
gzip members); (a) is $(calc "$size_a / $size_ref" %.3f) x that (what gzip over pg_dump's zlib output gains).

Peak RSS is GNU time's %M, Linux's ru_maxrss of the timed process: the larger
of its own peak and that of its largest waited-for descendant. For (b) that is
max(valerix-backup, pg_dump), and pg_dump alone peaks at (c)'s figure
($rss_own_note); for (e) and (g)
it is max(valerix-backup, pg_restore and its workers). For (a) and (d) it is
the largest of the separately timed commands. CPU is the timed process's and
its children's user + system time; server CPU is the cluster's, read from
/proc before and after each command (the postmaster and its children, ended
backends included), so it also holds whatever the server did meanwhile
(autovacuum, the checkpointer).

| target | measured | limit | result |
|---|---:|---:|---|
| (b) wall <= 1.25 x (c) wall | ${r_b_c} x | 1.25 x | $(verdict "${wall[b]} <= 1.25 * ${wall[c]}") |
| size (b) <= 1.0 x size (a) | ${r_size_b} x | 1.0 x | $(verdict "$size_b <= $size_a") |
| (b) peak RSS < 64 MiB | $(kib_mib "${rss[b]}") MiB | 64 MiB | $(verdict "${rss[b]} < 65536") |
| (e) wall <= 1.15 x (f) wall | ${r_e_f} x | 1.15 x | $(verdict "${wall[e]} <= 1.15 * ${wall[f]}") |
| (e) wall <= 0.8 x (d) wall | ${r_wall_e} x | 0.8 x | $(verdict "${wall[e]} <= 0.8 * ${wall[d]}") |
| (g) wall <= 1.15 x (f) wall | ${r_g_f} x | 1.15 x | $(verdict "${wall[g]} <= 1.15 * ${wall[f]}") |
| (h) wall <= 1.05 x (b) wall | ${r_h_b} x | 1.05 x | $(verdict "${wall[h]} <= 1.05 * ${wall[b]}") |
| (h) peak RSS <= 1.1 x (b) peak RSS (memory unchanged, within run-to-run noise) | $(kib_mib "${rss[h]}") MiB | $(kib_mib "$rss_h_limit") MiB | $(verdict "${rss[h]} <= $rss_h_limit") |

Content check: order_db's fingerprint (per-table row count and md5 of sorted
row md5s, sequences, index, constraint, view, trigger and type definitions)
was identical before the backups and after every (d), (e) and (i).
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

  parts[a]="a_dump a_gzip"
  parts[d]="d_gunzip d_prep d_restore"
  alternate "$rounds" a b h c d e i f g
  size_reference

  emit_report "$heading" "$(report)"
}

main
