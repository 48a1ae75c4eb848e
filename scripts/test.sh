#!/usr/bin/env bash
# Runs every tinyconv test: the runtime (host and its no_std build for the MCU), the trainer,
# the referee (tract, burn-import) and the firmware in QEMU. Installs what a fresh Debian
# machine lacks; everything is built once, in the release profile.
set -euo pipefail
cd "$(dirname "$0")/.."

# The pinned toolchain with its targets and components, and qemu-system-arm (see setup.sh).
./scripts/setup.sh --qemu

echo "== runtime: no_std build for the Cortex-M4F"
cargo build -p tinyconv --target thumbv7em-none-eabihf --release

echo "== all host tests (runtime, trainer, referee, firmware in QEMU)"
cargo test --release  # the default members: runtime, trainer, tests (which builds and boots the firmware)
