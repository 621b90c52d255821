#!/usr/bin/env bash
# The whole test suite, as CI runs it: installs what is missing, checks
# formatting and lints, then runs unit and integration tests (each
# integration test starts its own private PostgreSQL cluster).
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
scripts/setup.sh
cargo fmt --all -- --check
cargo clippy --all-targets --locked --quiet -- -D warnings
cargo test --all-targets --locked
