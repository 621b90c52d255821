# Sourced by the seed-compatible wrappers: finds the valerix-backup binary and
# the config, so crontab lines and runbooks written for the old scripts keep
# working. VALERIX_BACKUP_BIN and VALERIX_BACKUP_CONFIG override.
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
if [ -z "${VALERIX_BACKUP_BIN:-}" ]; then
  for candidate in "$(command -v valerix-backup || true)" \
                   "$repo/target/release/valerix-backup" "$repo/target/debug/valerix-backup"; do
    if [ -n "$candidate" ] && [ -x "$candidate" ]; then VALERIX_BACKUP_BIN=$candidate; break; fi
  done
fi
if [ -z "${VALERIX_BACKUP_BIN:-}" ]; then
  echo "$(basename "$0"): valerix-backup not found (cargo build --release, or set VALERIX_BACKUP_BIN)" >&2
  exit 1
fi
if [ -z "${VALERIX_BACKUP_CONFIG:-}" ] && [ -f "$repo/valerix-backup.toml" ]; then
  export VALERIX_BACKUP_CONFIG="$repo/valerix-backup.toml"
fi
