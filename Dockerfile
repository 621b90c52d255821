# syntax=docker/dockerfile:1
#
# valerix-backup: the agent image (see "Running the agent" in infra/README.md).
#
#   docker build -t ghcr.io/valerix/valerix-backup:0.1.0 .
#   docker run --rm ghcr.io/valerix/valerix-backup:0.1.0 --help
#
# The image runs `valerix-backup agent` (the scheduler, HTTP on :9187) by default;
# `docker run IMAGE agent --once backup` runs one job and exits, as a Kubernetes
# CronJob or a systemd timer would. BuildKit is required (the default builder of
# Docker 23 and later, and of Podman/Buildah) for the cache mounts below.

# The toolchain the project is built and tested with (rust-version in
# Cargo.toml, 1.91, is the oldest that builds it).
ARG RUST_VERSION=1.95
# The seed's servers are PostgreSQL 15 and Debian bookworm ships exactly 15.
# pg_dump refuses servers newer than itself: for a newer server take its major
# version from PGDG's apt repository instead.
ARG PG_MAJOR=15

############################################################################
FROM rust:${RUST_VERSION}-bookworm AS builder
WORKDIR /build
# Only what the release binary is built from: the tests' fixtures and infra/
# are not needed (infra/ is read by unit tests only).
COPY Cargo.toml Cargo.lock ./
COPY src ./src
# The commit the image is built from (`--build-arg VCS_REF=$(git rev-parse
# --short=12 HEAD)`; the context has no .git): `valerix-backup --version`
# reports it, and so does the image's revision label.
ARG VCS_REF=
# Stripped: the release profile keeps line tables for backtraces (79 MB);
# an image carries only what runs (about 15 MB).
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/build/target,sharing=locked \
    VALERIX_BACKUP_COMMIT="$VCS_REF" \
    CARGO_PROFILE_RELEASE_DEBUG=false CARGO_PROFILE_RELEASE_STRIP=symbols \
    cargo build --release --locked --bin valerix-backup \
 && install -D -m 0755 target/release/valerix-backup /out/valerix-backup

############################################################################
FROM debian:bookworm-slim AS runtime
ARG PG_MAJOR

# postgresql-client-15: pg_dump, pg_restore, psql (the only programs the tool runs).
# ca-certificates: TLS to Azure Storage, Entra ID and Resource Manager (rustls
#   reads the system store).
# (No tzdata: [agent] timezone is resolved by the binary's own zone database.)
# No curl: the HEALTHCHECK below speaks HTTP through bash's /dev/tcp, so the
# image carries no HTTP client that is not needed (Kubernetes probes with its
# own httpGet anyway).
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      ca-certificates \
      postgresql-client-${PG_MAJOR} \
 && rm -rf /var/lib/apt/lists/*

# Debian's /usr/bin/pg_dump is a Perl wrapper choosing a version; call the
# version's own binaries instead.
ENV PATH=/usr/lib/postgresql/${PG_MAJOR}/bin:$PATH

# An unprivileged user (uid/gid 10001, above any host's ordinary users) owns the
# backup directory. /backups is 0700 as the tool creates it itself.
RUN groupadd --system --gid 10001 valerix-backup \
 && useradd --system --uid 10001 --gid 10001 \
      --home-dir /var/lib/valerix-backup --no-create-home \
      --shell /usr/sbin/nologin valerix-backup \
 && install -d -m 0700 -o 10001 -g 10001 /backups /var/lib/valerix-backup \
 && install -d -m 0755 /etc/valerix-backup

COPY --from=builder /out/valerix-backup /usr/local/bin/valerix-backup

# Declared this late so that a new commit invalidates nothing above (a build
# argument changes the cache key of every RUN after its ARG).
ARG VCS_REF=
LABEL org.opencontainers.image.title="valerix-backup" \
      org.opencontainers.image.description="Backups, verification and safe restores of the Valerix PostgreSQL databases" \
      org.opencontainers.image.revision="$VCS_REF" \
      org.opencontainers.image.licenses="MIT"

# The config is mounted here (Compose: a read-only bind mount; Kubernetes: a
# ConfigMap). Its backup_dir must be "/backups". Secrets come from the
# environment variables it names (password_env, AZURE_STORAGE_CONNECTION_STRING)
# or from workload identity, never from the file or the image.
ENV VALERIX_BACKUP_CONFIG=/etc/valerix-backup/valerix-backup.toml \
    HOME=/var/lib/valerix-backup
VOLUME ["/backups"]
WORKDIR /backups
USER 10001:10001

# [agent] listen = "0.0.0.0:9187": /healthz, /readyz, /metrics.
EXPOSE 9187

# /healthz through bash's /dev/tcp (bash is part of debian:bookworm-slim): healthy
# only on an HTTP 200. Assumes the default port 9187; if [agent] listen names
# another port, override the healthcheck (Compose: healthcheck.test).
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/9187 && printf 'GET /healthz HTTP/1.1\\r\\nHost: localhost\\r\\nConnection: close\\r\\n\\r\\n' >&3 && read -r -t 4 _ code _ <&3 && [ \"$code\" = 200 ]"]

ENTRYPOINT ["valerix-backup"]
CMD ["agent"]
