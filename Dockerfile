# syntax=docker/dockerfile:1
#
# cloud-janitor container image: one static binary on an empty (scratch) base.
#
# Two ways to build it:
#
#   * Compile inside the build (needs the rust image; the default target):
#       docker build -t cloud-janitor .
#     It builds for the platform it runs on (x86_64 or aarch64).
#
#   * Package static binaries built on the host (what CI does; no image is pulled, so it works with
#     buildah in chroot isolation), for x86_64 and aarch64 in one multi-arch manifest:
#       .ci/build-static.sh            # target/{x86_64,aarch64}-unknown-linux-gnu/release/cloud-janitor
#       buildah manifest create cloud-janitor:0.1.0
#       for arch in amd64 arm64; do
#         buildah bud --isolation chroot --storage-driver vfs --format docker --target prebuilt \
#           --platform linux/$arch --manifest cloud-janitor:0.1.0 .
#       done
#       buildah manifest push --all cloud-janitor:0.1.0 docker://REGISTRY/cloud-janitor:0.1.0
#     `--platform` sets TARGETARCH, which picks the binary below. `--format docker` keeps the
#     HEALTHCHECK (the OCI image format has none). No stage of the prebuilt target runs anything,
#     so building the arm64 image needs no emulation.
#
# What the image contains and why:
#   * /cloud-janitor, linked statically against glibc (`+crt-static`; no musl
#     target can be installed where this project is built), built with the default features:
#     the simulator is in (`demo`, `simulate`), so `docker run IMAGE demo` tries it out without
#     credentials. It needs no file
#     of a libc in the image: static glibc (2.34 and later) has its `files` and
#     `dns` lookups built in, and with no /etc/nsswitch.conf here it reads the
#     /etc/hosts and /etc/resolv.conf that the container runtime mounts.
#   * TLS roots: the binary bundles Mozilla's roots (reqwest with rustls and
#     webpki-roots), so the image needs no /etc/ssl. For a private CA, mount a
#     PEM file and point the config at it: `cacert:` in clouds.yaml for an
#     OpenStack cloud, `ca_file` in the `[[clouds]]` entry of a Proxmox cluster.
#   * /etc/passwd and /etc/group with one non-root user, 65532 ("nonroot"), so
#     that tools that map the uid to a name show one. The image runs as that
#     numeric uid, which Kubernetes' runAsNonRoot can check without the file.
#   * /var/lib/cloud-janitor owned by 65532 for the history file, and /tmp owned
#     by 65532 for temporary files (the demo writes its clouds.yaml there). The
#     root filesystem can be read-only: mount volumes there (see deploy/).
#
# Configuration comes from a mounted file (/etc/cloud-janitor/config.toml by
# default) and CLOUD_JANITOR_<KEY> environment variables; secrets from mounted
# files (`token_secret_file`, clouds.yaml) or environment variables.

ARG RUST_VERSION=1.95
# Set by `--platform` (amd64 or arm64): which prebuilt binary the prebuilt target packages.
ARG TARGETARCH=amd64

# ---------------------------------------------------------------------------
FROM docker.io/library/rust:${RUST_VERSION}-bookworm AS builder
WORKDIR /src
# An explicit --target keeps +crt-static off build scripts and proc macros,
# which must stay dynamic host artifacts.
ENV CARGO_TERM_COLOR=never \
    RUSTFLAGS="-C target-feature=+crt-static"
COPY . .
RUN target="$(uname -m)-unknown-linux-gnu" \
 && cargo build --release --locked --target "$target" --bin cloud-janitor \
 && install -D -m 0755 "target/$target/release/cloud-janitor" /out/cloud-janitor

# ---------------------------------------------------------------------------
# Everything the final image has except the binary; shared by both targets.
FROM scratch AS base
COPY deploy/container/rootfs/ /
COPY --chown=65532:65532 deploy/container/state/ /var/lib/cloud-janitor/
COPY --chown=65532:65532 deploy/container/tmp/ /tmp/
LABEL org.opencontainers.image.title="cloud-janitor" \
      org.opencontainers.image.description="Deletes the resources interrupted CI jobs leave behind in OpenStack and Proxmox VE" \
      org.opencontainers.image.licenses="Apache-2.0"
USER 65532:65532
# glibc's allocator: buffers of 128 KiB and more (API answers) are mapped and returned when freed,
# and two arenas serve every thread. At 11,000 resources this takes the peak resident set from
# about 54 MiB to 38.5 (docs/BENCHMARKS.md); `cloud-janitor bench` runs the janitor with the same
# value (src/bench.rs, IMAGE_GLIBC_TUNABLES).
ENV GLIBC_TUNABLES=glibc.malloc.mmap_threshold=131072:glibc.malloc.arena_max=2
# Prometheus metrics, /healthz and /readyz (`listen` in the config).
EXPOSE 9464
# Exec form: there is no shell in the image. `healthcheck` GETs
# http://127.0.0.1:9464/healthz and exits non-zero unless it answers 2xx; if
# `listen` moves to another port, override this with `healthcheck --url ...`.
HEALTHCHECK --interval=30s --timeout=5s --start-period=15s --retries=3 \
    CMD ["/cloud-janitor", "healthcheck"]
ENTRYPOINT ["/cloud-janitor"]
CMD ["run", "--config", "/etc/cloud-janitor/config.toml"]

# ---------------------------------------------------------------------------
# Static binaries built on the host (.ci/build-static.sh), in the build context: one stage per
# architecture, the one of --platform chosen by TARGETARCH.
FROM base AS prebuilt-amd64
COPY --chmod=0755 target/x86_64-unknown-linux-gnu/release/cloud-janitor /cloud-janitor

FROM base AS prebuilt-arm64
COPY --chmod=0755 target/aarch64-unknown-linux-gnu/release/cloud-janitor /cloud-janitor

# A stage of this file, not an image to pull: there is no tag to pin.
# hadolint ignore=DL3006
FROM prebuilt-${TARGETARCH} AS prebuilt

# ---------------------------------------------------------------------------
# Default target: the binary compiled in the builder stage.
FROM base AS runtime
COPY --from=builder /out/cloud-janitor /cloud-janitor
