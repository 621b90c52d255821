#!/usr/bin/env bash
# Builds the agent's container image from the repository's own Dockerfile
# with podman, then runs it the way a deployment does and checks what it did,
# by content. Called by `cargo test --test deploy_manifests` (and so by
# scripts/test.sh); runs alone as well:
#
#   scripts/image-test.sh          build, inspect, run; exit 0 when every check passed
#
# Steps (each printed with its seconds):
#   1. podman and debootstrap from apt when missing.
#   2. The base images the Dockerfile names, made locally (no registry is
#      needed): docker.io/library/debian:bookworm-slim by debootstrap from
#      Debian's packages, trimmed as Debian's official slim image is; and
#      docker.io/library/rust:<the host toolchain>-bookworm, that base plus gcc
#      and the host's Rust toolchain. Each is kept in podman's storage and as
#      an archive under .tools/images/, so a later run loads it in seconds.
#   3. `podman build --format docker --pull=never` of the real Dockerfile, tagged
#      localhost/valerix-backup:test (docker format: OCI drops the HEALTHCHECK).
#   4. The image: its size; its config (user 10001, the HEALTHCHECK, no secret
#      in the environment); every layer's file list (no compiler, no apt
#      package lists, no shell history, no key or config file); its files'
#      content (no private key, no account key, no password of this run); the
#      binary stripped and reporting the commit it was built from.
#   5. Run as the image's own user against a private PostgreSQL 15 cluster and
#      Azurite (host network): --version, config check, agent --once backup
#      with the Compose stack's config (hosts pointed at the sandbox), then
#      verify. The dumps are 0600 files of uid 10001 in a 0700 directory; each
#      restores into a scratch database whose tables equal the source's
#      (row counts and an md5 of every row); each blob in Azurite has the local
#      file's SHA-256 (read with Microsoft's Python SDK).
#   6. The image's own HEALTHCHECK command, inside the image, against a running
#      agent: healthy while it runs, unhealthy once it stopped.
#
# `podman run` cannot start containers on this kind of machine (crun cannot
# set rlimits, cgroups are in hybrid mode; ../shared/docs/container-notes.md):
# the image's filesystem (`buildah mount`) is run by tests/tools/container-run.sh
# (a mount namespace, chroot as the image's user, no new privileges) with the
# image's user, working directory and environment exactly as built, on the
# host network.
#
# Environment:
#   IMAGE_TEST_KEEP=DIR   keep the work directory (config, env, backups, logs) as DIR
#   IMAGE_TEST_SUMMARY=F  write a JSON summary (sizes, seconds, names) to F
#
# Exit status: 0 every check passed, 1 a check failed (one line says which),
# 77 podman cannot build here at all (a skip, with the reason).
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
cache="$repo/.tools/images"
image=localhost/valerix-backup:test
base=docker.io/library/debian:bookworm-slim
rust_release=$(rustc --version | awk '{print $2}')          # 1.95.0
rust_minor=${rust_release%.*}                                # 1.95
builder=docker.io/library/rust:${rust_minor}-bookworm
t0=$(date +%s.%N)

say() { echo "image-test: $*" >&2; }
fail() { say "FAILED: $*"; exit 1; }
skip() { say "SKIPPED: $*"; exit 77; }
since() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'; }
step() { step_name=$1; step_t=$(date +%s.%N); say "$1 ..."; }
done_step() { local s; s=$(since "$step_t"); say "$step_name: ${s} s"; summary+=("\"$2\": $s"); }
summary=()
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"

# One image test at a time on the machine, whichever checkout it runs from:
# they share the image's tag and the agent's port 9187 (the HEALTHCHECK's).
# tests/deploy_manifests.rs takes the same lock for its Compose test.
mkdir -p "$cache"
exec 9>/tmp/valerix-image-test.lock
flock 9

############################################################################
step "tools"
if ! command -v podman >/dev/null 2>&1 || ! command -v buildah >/dev/null 2>&1 ||
  ! command -v debootstrap >/dev/null 2>&1; then
  say "installing podman and debootstrap"
  export DEBIAN_FRONTEND=noninteractive
  { $sudo apt-get update -qq && $sudo apt-get install -y -qq podman buildah debootstrap >/dev/null; } ||
    skip "podman could not be installed (apt-get failed)"
fi
why=$(podman info 2>&1 >/dev/null) || skip "podman cannot run here: ${why##*$'\n'}"
done_step tools tools_secs

############################################################################
# A base image: from podman's storage, else from its archive under .tools/,
# else made by MAKE and then archived.
ensure_image() {
  local name=$1 archive=$2 make=$3
  podman image exists "$name" && return
  if [ -s "$archive" ] && podman load -q -i "$archive" >/dev/null && podman image exists "$name"; then
    return
  fi
  "$make" "$name"
  podman save -q --format docker-archive -o "$archive.partial" "$name"
  mv "$archive.partial" "$archive"
}

# Debian's official debian:bookworm-slim is debootstrap's minbase with
# documentation, man pages and locales excluded by a dpkg filter (which also
# keeps them out of every later apt-get install) and apt's caches cleaned
# (debuerreotype's "slimify"). The same here, from the mirror apt uses.
make_base() {
  local root mirror
  mirror=$(sed -n 's/^URIs: *\(http[^ ]*\/debian\)$/\1/p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -n 1)
  mirror=${mirror:-http://deb.debian.org/debian}
  root=$(mktemp -d /tmp/valerix-image-base.XXXXXX)
  say "debootstrap bookworm from $mirror"
  $sudo debootstrap --variant=minbase bookworm "$root" "$mirror" >"$root.log" 2>&1 ||
    { tail -n 5 "$root.log" >&2; fail "debootstrap failed (log: $root.log)"; }
  $sudo tee "$root/etc/dpkg/dpkg.cfg.d/docker" >/dev/null <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/locale/*
EOF
  $sudo tee "$root/etc/apt/apt.conf.d/docker-clean" >/dev/null <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
Acquire::GzipIndexes "true";
EOF
  printf 'deb %s bookworm main\ndeb %s bookworm-updates main\ndeb %s-security bookworm-security main\n' \
    "$mirror" "$mirror" "$mirror" | $sudo tee "$root/etc/apt/sources.list" >/dev/null
  $sudo find "$root/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
  $sudo find "$root/usr/share/doc" -mindepth 1 -type d -empty -delete
  $sudo rm -rf "$root"/usr/share/{man,groff,info,lintian,linda,locale}/* \
    "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/* "$root"/var/log/* "$root"/tmp/* \
    "$root"/root/.bash_history
  $sudo tar -C "$root" --numeric-owner -c . |
    podman import -q --change 'CMD ["bash"]' - "$1" >/dev/null
  $sudo rm -rf "$root" "$root.log"
}

# A stand-in for the official rust:<version>-bookworm: the base, a C
# toolchain (libdeflater builds C), and the host's own Rust toolchain (the one
# the suite is built and tested with; its 800 MB of HTML docs left out), laid
# out as the official image lays it out (CARGO_HOME /usr/local/cargo).
# The crates come from crates.io inside the build: this machine reaches it
# through a TLS-inspecting egress proxy, so the builder (never the runtime
# image, which gets only Debian's ca-certificates) also trusts the host's
# extra CAs from /usr/local/share/ca-certificates.
make_builder() {
  local ctr sysroot
  sysroot=$(rustc --print sysroot)
  ctr=$(buildah from --pull=never -q "$base")
  buildah run --isolation chroot --network host "$ctr" -- sh -c \
    'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends gcc libc6-dev make pkg-config ca-certificates >/dev/null && rm -rf /var/lib/apt/lists/*'
  if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
    buildah copy -q "$ctr" /usr/local/share/ca-certificates/ /usr/local/share/ca-certificates/ >/dev/null
    buildah run --isolation chroot "$ctr" -- update-ca-certificates >/dev/null 2>&1
  fi
  for d in bin lib libexec; do
    [ ! -d "$sysroot/$d" ] || buildah copy -q "$ctr" "$sysroot/$d" "/usr/local/rust/$d" >/dev/null
  done
  buildah config --env RUSTUP_HOME=/usr/local/rustup --env CARGO_HOME=/usr/local/cargo \
    --env PATH=/usr/local/cargo/bin:/usr/local/rust/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --env RUST_VERSION="$rust_release" "$ctr"
  buildah run --isolation chroot "$ctr" -- sh -c 'mkdir -p /usr/local/cargo/bin && cargo --version >/dev/null'
  buildah commit -q --rm "$ctr" "$1" >/dev/null
}

step "base images"
ensure_image "$base" "$cache/debian-bookworm-slim.tar" make_base
ensure_image "$builder" "$cache/rust-${rust_minor}-bookworm.tar" make_builder
done_step "base images" base_images_secs

############################################################################
step "build"
commit=$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
[ -z "$(git status --porcelain -- Dockerfile Cargo.toml Cargo.lock src 2>/dev/null)" ] || commit="$commit-dirty"
previous=$(podman image inspect "$image" --format '{{.Id}}' 2>/dev/null || true)
podman build -q --format docker --isolation chroot --network host --pull=never \
  --build-arg RUST_VERSION="$rust_minor" --build-arg VCS_REF="$commit" \
  -t "$image" -f Dockerfile . >/dev/null 2>"$cache/build.log" ||
  { tail -n 20 "$cache/build.log" >&2; fail "podman build failed (log: $cache/build.log)"; }
# The image this build replaced under the tag (its layers below the binary
# stay: they are the new one's too).
if [ -n "$previous" ] && [ "$previous" != "$(podman image inspect "$image" --format '{{.Id}}')" ]; then
  podman rmi "$previous" >/dev/null 2>&1 || true
fi
done_step build build_secs

############################################################################
step "inspect"
work=$(mktemp -d /tmp/valerix-image-test.XXXXXX)
chmod 755 "$work"   # the postgres user reaches the sandbox cluster inside
ctr=""
pg_port=""
agent_pid=""
cleanup() {
  [ -z "$agent_pid" ] || { pkill -KILL -P "$agent_pid"; kill -KILL "$agent_pid"; } 2>/dev/null || true
  [ -z "$ctr" ] || { buildah umount "$ctr" >/dev/null 2>&1; buildah rm "$ctr" >/dev/null 2>&1; } || true
  [ -z "$pg_port" ] || scripts/pg-sandbox.sh stop "$work/pg" >/dev/null 2>&1 || true
  scripts/azurite.sh stop "$work/azurite" >/dev/null 2>&1 || true
  if [ -n "${IMAGE_TEST_KEEP:-}" ]; then
    rm -rf "$IMAGE_TEST_KEEP" && mv "$work" "$IMAGE_TEST_KEEP" && say "kept the work directory as $IMAGE_TEST_KEEP"
  else
    rm -rf "$work"
  fi
}
trap cleanup EXIT

size=$(podman image inspect "$image" --format '{{.Size}}')
say "image size: $((size / 1000000)) MB"
cfg=$(podman image inspect "$image" --format '{{json .Config}}')
[ "$(jq -r .User <<<"$cfg")" = "10001:10001" ] || fail "the image's user is $(jq -r .User <<<"$cfg"), not 10001:10001"
hc=$(podman image inspect "$image" --format '{{json .Config.Healthcheck}}')
[ "$(jq -r '.Test[0] // empty' <<<"$hc" 2>/dev/null)" = CMD ] ||
  fail "the image has no HEALTHCHECK in exec form (built in OCI format?): $hc"
secret_env=$(jq -r '.Env[] | split("=")[0]' <<<"$cfg" | grep -Ei 'password|secret|accountkey|token|connection_string' | tr '\n' ' ' || true)
[ -z "$secret_env" ] || fail "the image's environment sets a secret: $secret_env(names only)"
history=$(podman history --no-trunc --format '{{.CreatedBy}}' "$image")
! grep -Eiq 'accountkey|password=|ca-certificates/.*\.crt' <<<"$history" ||
  fail "a layer's command line holds a secret or the build machine's CA"

# Every layer on its own: a file deleted by a later layer is still shipped.
podman save -q --format docker-archive -o "$work/image.tar" "$image"
mkdir "$work/layers"
tar -C "$work/layers" -xf "$work/image.tar"
layers=$(jq -r '.[0].Layers[]' "$work/layers/manifest.json")
forbidden='^(\./)?(usr/(local/)?bin/(gcc|cc|c\+\+|g\+\+|rustc|cargo|ld)(-[0-9.]+)?|usr/local/(rust|cargo)/.+|var/lib/apt/lists/[^/]+_(InRelease|Release|Packages|Sources|Translation)[^/]*|var/cache/apt/.+\.(deb|bin)|(root|home/[^/]+|var/lib/valerix-backup)/\.[a-z]*_history|.*/\.git-credentials|.*/id_(rsa|ed25519|ecdsa)|.*\.env|etc/valerix-backup/.+|usr/local/share/ca-certificates/.+|etc/ssl/private/.+|backups/.+)$'
for layer in $layers; do
  hits=$(tar -tf "$work/layers/$layer" | grep -E "$forbidden" | head -n 5 || true)
  [ -z "$hits" ] || fail "layer $layer ships $(tr '\n' ' ' <<<"$hits")"
done

ctr=$(buildah from --pull=never -q "$image")
root=$(buildah mount "$ctr")
bin="$root/usr/local/bin/valerix-backup"
bin_size=$(stat -c %s "$bin")
say "binary: $((bin_size / 1000000)) MB"
! readelf -S --wide "$bin" | grep -Eq '\.(debug_[a-z]+|symtab)\b' ||
  fail "the binary in the image is not stripped ($(readelf -S --wide "$bin" | grep -Eo '\.(debug_[a-z]+|symtab)' | sort -u | tr '\n' ' '))"
# No private key, no account key anywhere in the image; the build machine's
# extra CAs are not trusted by it.
keys=$(grep -rlIE -e '-----BEGIN ([A-Z]+ )?PRIVATE KEY-----' -e 'AccountKey=[A-Za-z0-9+/]{20}' \
  "$root"/{etc,usr/local,var,root,backups,home} 2>/dev/null | head -n 3 || true)
[ -z "$keys" ] || fail "the image holds a key: ${keys//$root/}"
for extra in /usr/local/share/ca-certificates/*.crt; do
  [ -e "$extra" ] || continue
  pem=$(sed -n '2p' "$extra")
  ! grep -qF "$pem" "$root/etc/ssl/certs/ca-certificates.crt" ||
    fail "the image trusts the build machine's CA $(basename "$extra")"
done
for tool in pg_dump pg_restore psql; do
  [ -x "$root/usr/lib/postgresql/15/bin/$tool" ] || fail "the image has no $tool 15"
done
done_step inspect inspect_secs

############################################################################
step "run"
# As `docker run` runs the image: its filesystem, user, working directory and
# environment, plus Compose's env_file (the secrets reach the process's
# environment, never a command line), on the host network; the config
# read-only and /backups bound (tests/tools/container-run.sh, which the
# Compose test uses too).
mapfile -t image_env < <(jq -r '.Env[]' <<<"$cfg")
image_user=$(jq -r .User <<<"$cfg")
image_workdir=$(jq -r .WorkingDir <<<"$cfg")
run_in_image() (   # run_in_image ARGV...
  while read -r name; do unset "$name"; done < <(compgen -e)
  for kv in "${image_env[@]}"; do export "${kv?}"; done
  while IFS= read -r line || [ -n "$line" ]; do
    case $line in "" | "#"*) continue ;; esac
    value=${line#*=}
    case $value in \"*\" | \'*\') value=${value:1:${#value}-2} ;; esac
    export "${line%%=*}=$value"
  done <"$work/secrets.env"
  exec "$repo/tests/tools/container-run.sh" "$root" "$image_user" "$image_workdir" \
    --volume "$work/config.toml:/etc/valerix-backup/valerix-backup.toml:ro" \
    --volume "$work/backups:/backups" -- "$@"
)

pg_port=$(scripts/pg-sandbox.sh free-port)
scripts/pg-sandbox.sh start "$work/pg" "$pg_port" >/dev/null
scripts/pg-sandbox.sh seed "$work/pg" "$pg_port" 50 >/dev/null
az_port=$(scripts/azurite.sh free-port)
scripts/azurite.sh start "$work/azurite" "$az_port" memory >/dev/null
conn=$(scripts/azurite.sh conn "$az_port")
container=database-backups
AZURE_STORAGE_CONNECTION_STRING="$conn" .tools/py/bin/python tests/tools/blob_reader.py create "$container" >/dev/null

# The Compose stack's own config and env file, with the hosts on valerix-network
# pointed at the sandbox (the image runs on the host network here).
sed -e 's/^host = "\(order\|inventory\)-db"$/host = "127.0.0.1"/' -e "s/^port = 5432$/port = $pg_port/" \
  infra/compose/valerix-backup.toml >"$work/config.toml"
grep -q "^port = $pg_port$" "$work/config.toml" || fail "infra/compose/valerix-backup.toml no longer has the expected hosts"
(umask 077 && sed -e 's/^ORDER_DB_PASSWORD=.*/ORDER_DB_PASSWORD=order_password/' \
  -e 's/^INVENTORY_DB_PASSWORD=.*/INVENTORY_DB_PASSWORD=inventory_password/' \
  -e "s|^AZURE_STORAGE_CONNECTION_STRING=.*|AZURE_STORAGE_CONNECTION_STRING=$conn|" \
  infra/compose/valerix-backup.env.example >"$work/secrets.env")
chmod 644 "$work/config.toml"
chmod 644 "$work/secrets.env"   # read by uid 10001 through the bind mount; the directory is private
install -d -m 0700 -o 10001 -g 10001 "$work/backups"

out=$(run_in_image id -u)
[ "$out" = 10001 ] || fail "the image runs as uid $out, not 10001"
version=$(run_in_image valerix-backup --version)
say "$version"
[[ $version == "valerix-backup "*"(commit $commit)" ]] || fail "--version says '$version', not commit $commit"
run_in_image valerix-backup config check >"$work/config-check.log" 2>&1 ||
  { cat "$work/config-check.log" >&2; fail "config check failed in the image"; }
run_in_image valerix-backup agent --once backup >"$work/backup.log" 2>&1 ||
  { tail -n 20 "$work/backup.log" >&2; fail "agent --once backup failed in the image"; }
run_in_image valerix-backup verify >"$work/verify.log" 2>&1 ||
  { tail -n 20 "$work/verify.log" >&2; fail "verify failed in the image"; }

# The files: uid 10001, 0600 in 0700, nothing else.
[ "$(stat -c '%a %u' "$work/backups")" = "700 10001" ] || fail "/backups is $(stat -c '%a %u' "$work/backups")"
bad=$(find "$work/backups" -mindepth 1 \( -type f -not -perm 0600 -o -type d -not -perm 0700 -o -not -uid 10001 \) -printf '%P %m %u\n' | head -n 3)
[ -z "$bad" ] || fail "backup files not 0600/0700 of uid 10001: $bad"
psql_pg() { scripts/pg-sandbox.sh psql "$work/pg" "$pg_port" -At -v ON_ERROR_STOP=1 "$@"; }
fingerprint() {   # fingerprint DB: every table's row count and md5 of its rows
  local t
  for t in $(psql_pg -d "$1" -c "SELECT quote_ident(table_name) FROM information_schema.tables WHERE table_schema = 'public' AND table_type = 'BASE TABLE' ORDER BY 1"); do
    echo "$t $(psql_pg -d "$1" -c "SELECT count(*) || ' ' || md5(coalesce(string_agg(x::text, E'\\n' ORDER BY x::text), '')) FROM $t x")"
  done
}
dumps=0
for db in order_db inventory_db; do
  dump=$(find "$work/backups" -name "${db}_*.dump.gz" -printf '%p\n' | sort | tail -n 1)
  [ -n "$dump" ] || fail "no dump of $db in /backups: $(ls "$work/backups" | tr '\n' ' ')"
  psql_pg -d postgres -c "CREATE DATABASE image_check_$db" >/dev/null
  gzip -dc "$dump" | "$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)/pg_restore" \
    -h "$work/pg" -p "$pg_port" -U postgres --no-owner -d "image_check_$db" 2>"$work/restore.log" ||
    { cat "$work/restore.log" >&2; fail "$(basename "$dump") does not restore"; }
  want=$(fingerprint "$db"); got=$(fingerprint "image_check_$db")
  [ -n "$want" ] && [ "$want" = "$got" ] || fail "$(basename "$dump") restores to other data than $db holds"
  # The same bytes in Azurite, by Microsoft's SDK.
  blob=$(AZURE_STORAGE_CONNECTION_STRING="$conn" .tools/py/bin/python tests/tools/blob_reader.py list "$container" |
    jq -r --arg f "$(basename "$dump")" '.[] | select(.name | endswith("/" + $f)) | .name' | head -n 1)
  [ -n "$blob" ] || fail "$(basename "$dump") is not in Azurite"
  remote=$(AZURE_STORAGE_CONNECTION_STRING="$conn" .tools/py/bin/python tests/tools/blob_reader.py sha256 "$container" "$blob")
  [ "$remote" = "$(sha256sum "$dump" | cut -d' ' -f1)" ] || fail "blob $blob differs from $(basename "$dump")"
  dumps=$((dumps + 1))
done
say "$dumps dumps: 0600 of uid 10001, restore to the source's data, same SHA-256 in Azurite"
done_step run run_secs

############################################################################
step "healthcheck"
mapfile -t hc_cmd < <(jq -r '.Test[1:][]' <<<"$hc")
healthy() { run_in_image "${hc_cmd[@]}" >/dev/null 2>&1; }
(exec 3<>/dev/tcp/127.0.0.1/9187) 2>/dev/null && fail "127.0.0.1:9187 (the HEALTHCHECK's port) is already in use"
healthy && fail "the HEALTHCHECK passes with no agent running"
run_in_image valerix-backup agent >"$work/agent.log" 2>&1 </dev/null &
agent_pid=$!
ok=""
for _ in $(seq 1 60); do
  if healthy; then ok=1; break; fi
  kill -0 "$agent_pid" 2>/dev/null || { tail -n 20 "$work/agent.log" >&2; fail "the agent ended at start"; }
  sleep 0.5
done
[ -n "$ok" ] || { tail -n 20 "$work/agent.log" >&2; fail "the HEALTHCHECK never passed against a running agent"; }
# SIGTERM to the agent alone, as an engine's stop does: the background job
# is the subshell of run_in_image, whose one child execs into the agent.
agent=$(pgrep -P "$agent_pid") || fail "no agent process under the background job"
kill -TERM "$agent"
status=0
wait "$agent_pid" || status=$?
agent_pid=""
healthy && fail "the HEALTHCHECK still passes after the agent stopped"
case $status in 0|130) ;; *) tail -n 20 "$work/agent.log" >&2; fail "the agent exited $status on SIGTERM" ;; esac
done_step healthcheck healthcheck_secs

total=$(since "$t0")
say "passed in $total s (image $((size / 1000000)) MB, binary $((bin_size / 1000000)) MB)"
if [ -n "${IMAGE_TEST_SUMMARY:-}" ]; then
  printf '{"image": "%s", "commit": "%s", "image_bytes": %s, "binary_bytes": %s, %s, "total_secs": %s}\n' \
    "$image" "$commit" "$size" "$bin_size" "$(IFS=,; echo "${summary[*]}")" "$total" >"$IMAGE_TEST_SUMMARY"
fi
