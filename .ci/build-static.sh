#!/usr/bin/env bash
# Static release binaries of cloud-janitor for the container image, one per architecture:
#
#   .ci/build-static.sh [x86_64] [aarch64]      # default: both
#
# writes target/<arch>-unknown-linux-gnu/release/cloud-janitor. Each is linked statically against
# glibc (`-C target-feature=+crt-static`): no musl toolchain is needed, and the binary runs on
# `scratch`. aarch64 is cross-compiled with Debian's gcc-aarch64-linux-gnu (installed when missing,
# as root) and the Rust target aarch64-unknown-linux-gnu (added with rustup when missing).
#
# The linker and C compiler for aarch64 are given here through the environment, not in a committed
# .cargo/config.toml, so other builds on the machine are unaffected. RUSTFLAGS is set for these
# builds only, with an explicit --target, so build scripts and proc macros stay dynamic host
# artifacts and the caches of the other builds stay valid.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
ARCHES=("$@")
((${#ARCHES[@]})) || ARCHES=(x86_64 aarch64)

for arch in "${ARCHES[@]}"; do
    target=$arch-unknown-linux-gnu
    case $arch in
    x86_64) ;;
    aarch64)
        if ! command -v aarch64-linux-gnu-gcc >/dev/null || [[ ! -e /usr/aarch64-linux-gnu/lib/libc.a ]]; then
            echo "installing the aarch64 cross toolchain (gcc-aarch64-linux-gnu, libc6-dev-arm64-cross)"
            apt-get -o DPkg::Lock::Timeout=600 update -qq
            DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq \
                --no-install-recommends gcc-aarch64-linux-gnu libc6-dev-arm64-cross >/dev/null
        fi
        rustup target list --installed | grep -qx "$target" || rustup target add "$target"
        # The linker for the final binary; the C compiler and archiver for the C in the build
        # (SQLite in rusqlite, ring's assembly and C).
        export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
        export CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc
        export AR_aarch64_unknown_linux_gnu=aarch64-linux-gnu-ar
        ;;
    *)
        echo "unknown architecture $arch (x86_64 or aarch64)" >&2
        exit 64
        ;;
    esac
    echo "=== static release build for $target"
    RUSTFLAGS="-C target-feature=+crt-static" \
        cargo build --release --locked --target "$target" --bin cloud-janitor
    ls -l "target/$target/release/cloud-janitor"
done
