#!/usr/bin/env bash
# Installs what valerix-backup's demo, tests and benchmark need on a fresh
# Debian machine that has only the Rust toolchain. Idempotent: installs only
# what is missing, and runs apt-get update only when it has to.
set -euo pipefail

need=()
pg_bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
[ -n "$pg_bin" ] && [ -x "$pg_bin/initdb" ] || need+=(postgresql)
command -v pg_dump >/dev/null 2>&1 || need+=(postgresql-client)
command -v gzip >/dev/null 2>&1 || need+=(gzip)
[ -x /usr/bin/time ] || need+=(time)
command -v python3 >/dev/null 2>&1 || need+=(python3)

if [ ${#need[@]} -gt 0 ]; then
  echo "setup: installing ${need[*]}" >&2
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  # The Debian postgresql package creates and starts a default cluster on
  # 5432; the sandbox never uses it, and policy-rc.d keeps it from starting.
  printf '#!/bin/sh\nexit 101\n' | $sudo tee /usr/sbin/policy-rc.d >/dev/null
  $sudo chmod +x /usr/sbin/policy-rc.d
  $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  $sudo rm -f /usr/sbin/policy-rc.d
fi
id postgres >/dev/null 2>&1 || { echo "setup: no postgres user after install" >&2; exit 1; }
echo "setup: ok ($(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)/postgres, $(pg_dump --version))" >&2
