#!/usr/bin/env bash
# The main job on a throwaway local database: installs what is missing,
# starts a private PostgreSQL with the seed's two databases and sample data
# and a local Azurite (the Azure Storage emulator), then runs backup with
# upload, verify --deep, audit, an accident and a restore, then loses the
# whole backup directory and restores from Azure; each time it shows that
# the restored data is identical. Nothing outside /tmp is touched.
#
#   scripts/demo.sh [--scale N]     (default 2000: a few MB per database)
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
scale=2000
[ "${1:-}" = "--scale" ] && scale=${2:?--scale N}

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "installing what is missing"
"$repo/scripts/setup.sh"
step "building valerix-backup (release)"
cargo build --release --quiet --manifest-path "$repo/Cargo.toml"
vb="$repo/target/release/valerix-backup"

work=$(mktemp -d /tmp/valerix-demo.XXXXXX)
chmod 755 "$work"   # the sandbox server runs as the postgres user
pg="$work/pg"
port=$("$repo/scripts/pg-sandbox.sh" free-port)
az_port=$("$repo/scripts/pg-sandbox.sh" free-port)
trap '"$repo/scripts/azurite.sh" stop "$work/azurite" >/dev/null 2>&1 || true; "$repo/scripts/pg-sandbox.sh" stop "$pg"' EXIT
step "starting a sandbox PostgreSQL on 127.0.0.1:$port with sample data (scale $scale)"
"$repo/scripts/pg-sandbox.sh" start "$pg" "$port"
"$repo/scripts/pg-sandbox.sh" seed "$pg" "$port" "$scale"
step "starting Azurite (blob service) on 127.0.0.1:$az_port"
"$repo/scripts/azurite.sh" start "$work/azurite" "$az_port"
# Azurite's well-known development account; a real one comes from the portal.
AZURE_STORAGE_CONNECTION_STRING=$("$repo/scripts/azurite.sh" conn "$az_port")
export AZURE_STORAGE_CONNECTION_STRING

cat >"$work/valerix-backup.toml" <<TOML
# The seed's two databases, on the sandbox server.
backup_dir = "backups"
retention_days = 7

[[database]]
name = "order"
dbname = "order_db"
host = "127.0.0.1"
port = $port
user = "order_user"
password_env = "ORDER_DB_PASSWORD"

[[database]]
name = "inventory"
dbname = "inventory_db"
host = "127.0.0.1"
port = $port
user = "inventory_user"
password_env = "INVENTORY_DB_PASSWORD"

[azure]
container = "database-backups"   # connection string from AZURE_STORAGE_CONNECTION_STRING
TOML
export VALERIX_BACKUP_CONFIG="$work/valerix-backup.toml"
export ORDER_DB_PASSWORD=order_password INVENTORY_DB_PASSWORD=inventory_password

fingerprint() {
  "$repo/scripts/pg-sandbox.sh" psql "$pg" "$port" -d "$1" -Atc \
    "SELECT md5(string_agg(t, '' ORDER BY t)) FROM (
       SELECT (SELECT md5(string_agg(x::text, ',' ORDER BY x::text)) FROM orders x)
       UNION ALL SELECT (SELECT md5(string_agg(x::text, ',' ORDER BY x::text)) FROM order_items x)
       UNION ALL SELECT (SELECT md5(string_agg(x::text, ',' ORDER BY x::text)) FROM invoices x)) s(t)"
}

step "valerix-backup backup --upload   (local backup, then the offsite copy)"
"$vb" backup --upload
step "valerix-backup list   (local and offsite side by side)"
"$vb" list
step "valerix-backup audit --deep   (re-hashes every offsite copy)"
"$vb" audit --deep
step "valerix-backup verify latest --deep   (restores into a scratch database: the measured RTO)"
"$vb" verify latest --deep
before=$(fingerprint order_db)

step "an accident: someone deletes order items and zeroes invoices"
"$repo/scripts/pg-sandbox.sh" psql "$pg" "$port" -d order_db -c \
  "DELETE FROM order_items WHERE line = 2; UPDATE invoices SET pdf = ''::bytea"
[ "$(fingerprint order_db)" != "$before" ] && echo "order_db now differs from the backup"

step "valerix-backup restore latest order --yes"
"$vb" restore latest order --yes
after=$(fingerprint order_db)
if [ "$after" = "$before" ]; then
  echo "order_db content fingerprint after restore equals the one before the accident: $after"
else
  echo "MISMATCH: $before before, $after after" >&2
  exit 1
fi

step "the machine is lost: its backup directory is gone, and order_db is damaged again"
rm -rf "$work/backups"
"$repo/scripts/pg-sandbox.sh" psql "$pg" "$port" -d order_db -c "DELETE FROM invoices"
step "valerix-backup restore latest both --from-azure --yes"
"$vb" restore latest both --from-azure --yes
after=$(fingerprint order_db)
if [ "$after" = "$before" ]; then
  echo "order_db restored from Azure equals the original: $after"
else
  echo "MISMATCH after restore from Azure: $before before, $after after" >&2
  exit 1
fi

step "valerix-backup status"
"$vb" status
step "valerix-backup lifecycle-policy   (what deletes old copies in Azure)"
"$vb" lifecycle-policy
step "done"
echo "Backups and manifests are in $work/backups (the sandbox server and Azurite are stopped)."
