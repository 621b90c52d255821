#!/bin/bash
# Runs a command in an image's root filesystem the way a container engine
# runs a container, for the tests of tests/deploy_manifests.rs: `podman run`
# cannot start containers on this kind of machine (crun cannot set rlimits,
# cgroups are in hybrid mode; see ../shared/docs/container-notes.md).
#
#   container-run.sh ROOTFS UID:GID WORKDIR [--read-only] [--tmpfs PATH]...
#                    [--volume SRC:DST[:ro]]... -- COMMAND [ARG...]
#
# ROOTFS is a working container's filesystem (`buildah mount`). In a mount
# namespace of its own: /proc, /dev, each volume bound (read-only with :ro),
# each tmpfs; with --read-only the root itself is then made read-only, as
# Compose's `read_only: true` does. Then chroot into it as UID:GID with no
# supplementary groups and no new privileges (the process holds no capability:
# it is not root), in WORKDIR. The environment is the caller's, unchanged:
# the caller passes the image's, the env_file's and `environment:` there,
# never on a command line. The host's network (`--network host`).
set -euo pipefail
root=${1:?ROOTFS}
user=${2:?UID:GID}
workdir=${3:?WORKDIR}
shift 3
read_only=""
tmpfs=()
volumes=()
while [ $# -gt 0 ]; do
  case $1 in
  --read-only) read_only=1 ;;
  --tmpfs) tmpfs+=("$2"); shift ;;
  --volume) volumes+=("$2"); shift ;;
  --) shift; break ;;
  *) echo "container-run.sh: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
[ $# -gt 0 ] || { echo "container-run.sh: no command" >&2; exit 2; }
# The setup runs on the host's PATH; the command gets the caller's (the
# container's environment).
container_path=${PATH:-/usr/bin:/bin}
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

# In the new namespace: these mounts vanish with the process.
setup=$(cat <<'EOF'
set -euo pipefail
root=$1 user=$2 workdir=$3 read_only=$4 ntmpfs=$5 nvolumes=$6 path=$7
shift 7
tmpfs=("${@:1:ntmpfs}"); shift "$ntmpfs"
volumes=("${@:1:nvolumes}"); shift "$nvolumes"
mount --make-rprivate /
mount --bind "$root" "$root"
mount -t proc proc "$root/proc"
mount --bind /dev "$root/dev"
for v in "${volumes[@]}"; do
  IFS=: read -r src dst mode <<<"$v"
  # A file mounted on a path the image lacks needs a file to mount on (in the
  # working container's own layer, thrown away with it).
  if [ ! -e "$root$dst" ]; then
    if [ -d "$src" ]; then mkdir -p "$root$dst"; else mkdir -p "$(dirname "$root$dst")"; : >"$root$dst"; fi
  fi
  mount --bind "$src" "$root$dst"
  [ "$mode" != ro ] || mount -o remount,bind,ro "$root$dst"
done
for t in "${tmpfs[@]}"; do mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs "$root$t"; done
[ -z "$read_only" ] || mount -o remount,bind,ro "$root"
exec setpriv --no-new-privs chroot --userspec="$user" --groups="${user#*:}" "$root" \
  /usr/bin/env --chdir="$workdir" PATH="$path" "$@"
EOF
)
exec unshare --mount -- bash -c "$setup" container-run "$root" "$user" "$workdir" "$read_only" \
  "${#tmpfs[@]}" "${#volumes[@]}" "$container_path" "${tmpfs[@]}" "${volumes[@]}" "$@"
