#!/usr/bin/env bash
# Seed-compatible: exits 1 when a database lacks a backup younger than 25 hours.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/wrapper-common.sh"
exec "$VALERIX_BACKUP_BIN" status --max-age "${EXPECTED_BACKUP_AGE_HOURS:-25}h" "$@"
