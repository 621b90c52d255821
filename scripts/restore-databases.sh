#!/usr/bin/env bash
# Seed-compatible: restore-databases.sh <timestamp> [order|inventory|both]
# Now verifies the backup first and swaps a fully restored database in place
# of the live one; on any failure the live database is left untouched.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/wrapper-common.sh"
if [ $# -lt 1 ]; then
  echo "Usage: $0 <timestamp> [order|inventory|both]"
  echo ""
  echo "Available backups:"
  "$VALERIX_BACKUP_BIN" list || true
  exit 1
fi
# The seed's script never asked for confirmation; runbooks call it as is.
exec "$VALERIX_BACKUP_BIN" restore "$1" "${2:-both}" --yes
