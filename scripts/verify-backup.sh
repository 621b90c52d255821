#!/usr/bin/env bash
# Seed-compatible: verifies the newest backups (crontab: 0 3 * * *). Unlike the
# seed's, it reads each file whole and checks its SHA-256 against the manifest.
# Extra arguments pass through (e.g. --deep for a restore drill).
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/wrapper-common.sh"
exec "$VALERIX_BACKUP_BIN" verify latest "$@"
