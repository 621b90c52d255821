#!/usr/bin/env bash
# The whole test suite, as CI runs it: installs what is missing, checks
# formatting and lints, builds every test target, then runs them: unit tests,
# the integration tests (each starts its own private PostgreSQL clusters,
# Azurite and stand-ins) and the container image test (scripts/image-test.sh,
# called by tests/deploy_manifests.rs).
#
# The test binaries run VALERIX_TEST_JOBS (default 3) at a time, slowest
# first: most of an integration test is waiting on a server, a child process
# or a Retry-After, so one binary after another (what `cargo test` does)
# left the two cores idle more than half the time. Each binary's output is
# printed whole when it ends. `cargo test --all-targets` runs the same tests,
# one binary after another.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
scripts/setup.sh
cargo fmt --all -- --check
cargo clippy --all-targets --locked --quiet -- -D warnings
exec scripts/lib/run-tests.sh
