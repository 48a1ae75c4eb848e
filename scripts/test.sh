#!/usr/bin/env bash
# Runs every tinyconv test: the runtime (host and its no_std build for the MCU), the trainer,
# the referee (tract, burn-import) and the firmware in QEMU. Installs what a fresh Debian
# machine lacks; everything is built once, in the release profile.
set -euo pipefail
cd "$(dirname "$0")/.."

# rust-toolchain.toml makes rustup install the toolchain and the thumbv7em target on first use.
rustup show active-toolchain >/dev/null

if ! command -v qemu-system-arm >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "qemu-system-arm is missing: installing it with apt-get"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq qemu-system-arm >/dev/null
    else
        echo "error: qemu-system-arm is missing and this script cannot install it (needs root and apt-get)." >&2
        echo "       install it with: sudo apt-get install qemu-system-arm   (Debian/Ubuntu)" >&2
        echo "                   or:  sudo dnf install qemu-system-arm       (Fedora)" >&2
        echo "                   or:  brew install qemu                      (macOS)" >&2
        exit 1
    fi
fi

echo "== runtime: no_std build for the Cortex-M4F"
cargo build -p tinyconv --target thumbv7em-none-eabihf --release

echo "== all host tests (runtime, trainer, referee, firmware in QEMU)"
cargo test --release  # the default members: runtime, trainer, tests (which builds and boots the firmware)
