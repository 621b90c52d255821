#!/usr/bin/env bash
# Installs what valerix-backup's demo, tests and benchmark need on a fresh
# Debian machine that has only the Rust toolchain. Idempotent: installs only
# what is missing, and runs apt-get update only when it has to.
#
# Besides the Debian packages, two project-local tools under .tools/ (ignored
# by git) for the offsite (Azure Blob) tests and benchmark:
#   .tools/azurite   the Azurite storage emulator (npm), pinned
#   .tools/py        a Python venv with azure-storage-blob, pinned: the
#                    independent reader tests/tools/blob_reader.py
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
azurite_version=3.37.0
blob_sdk_version=12.31.1
azurite_dir="$repo/.tools/azurite"
venv="$repo/.tools/py"

azurite_installed() {
  [ -x "$azurite_dir/node_modules/.bin/azurite-blob" ] &&
    [ "$(node -p 'require(process.argv[1]).version' \
      "$azurite_dir/node_modules/azurite/package.json" 2>/dev/null)" = "$azurite_version" ]
}
venv_installed() {
  [ -x "$venv/bin/python" ] &&
    "$venv/bin/python" - "$blob_sdk_version" >/dev/null 2>&1 <<'PY'
import sys, importlib.metadata as m
import azure.storage.blob  # noqa: F401
sys.exit(m.version("azure-storage-blob") != sys.argv[1])
PY
}

need=()
pg_bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
[ -n "$pg_bin" ] && [ -x "$pg_bin/initdb" ] || need+=(postgresql)
command -v pg_dump >/dev/null 2>&1 || need+=(postgresql-client)
command -v gzip >/dev/null 2>&1 || need+=(gzip)
# A C compiler and libc headers: the libdeflater crate builds libdeflate's C
# sources (the cc crate); the Rust toolchain links with cc too.
command -v cc >/dev/null 2>&1 || need+=(gcc)
[ -e /usr/include/stdint.h ] || need+=(libc6-dev)
[ -x /usr/bin/time ] || need+=(time)
command -v openssl >/dev/null 2>&1 || need+=(openssl)   # the test CA of tests/entra.rs
command -v jq >/dev/null 2>&1 || need+=(jq)   # the benchmarks read the tool's --json with it
# age and age-keygen: the independent reader of encrypted backups (tests/encryption.rs)
{ command -v age >/dev/null 2>&1 && command -v age-keygen >/dev/null 2>&1; } || need+=(age)
if ! command -v python3 >/dev/null 2>&1; then
  need+=(python3 python3-venv)
elif ! venv_installed && ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
  need+=(python3-venv)   # Debian's python3 ships venv's pip bootstrap apart
fi
command -v node >/dev/null 2>&1 || need+=(nodejs)
command -v npm >/dev/null 2>&1 || need+=(npm)

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

if ! azurite_installed; then
  echo "setup: installing azurite@$azurite_version into .tools/azurite" >&2
  mkdir -p "$azurite_dir"
  # Azurite 3.37 declares node >=22; it runs on Node 20 (EBADENGINE warning).
  npm install --prefix "$azurite_dir" "azurite@$azurite_version" \
    --no-audit --no-fund --loglevel=error >/dev/null
  azurite_installed || { echo "setup: azurite $azurite_version not usable after install" >&2; exit 1; }
fi

if ! venv_installed; then
  echo "setup: installing azure-storage-blob==$blob_sdk_version into .tools/py" >&2
  [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
  "$venv/bin/python" -m pip install -q --disable-pip-version-check --no-input \
    "azure-storage-blob==$blob_sdk_version"
  venv_installed || { echo "setup: azure-storage-blob $blob_sdk_version not importable after install" >&2; exit 1; }
fi

echo "setup: ok ($(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)/postgres, $(pg_dump --version)," \
  "azurite $azurite_version, azure-storage-blob $blob_sdk_version)" >&2
