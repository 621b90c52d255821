#!/usr/bin/env bash
# Seed-compatible: daily backup of both databases (crontab: 0 2 * * *).
# Now one streaming pass per database with a SHA-256 manifest and retention.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/wrapper-common.sh"
exec "$VALERIX_BACKUP_BIN" backup "$@"
