#!/usr/bin/env bash
# Installs what the README's commands need on a fresh machine, idempotently:
#  - the Rust toolchain pinned in rust-toolchain.toml, with its targets and components. rustup
#    installs a missing toolchain on first use but never adds targets or components to one that is
#    already installed, so they are added explicitly here;
#  - with --qemu: qemu-system-arm (the firmware tests), via apt-get when running as root.
# Sourced or run by scripts/test.sh and scripts/train.sh; safe to run again.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
toml="$root/rust-toolchain.toml"

if ! command -v rustup >/dev/null 2>&1; then
    echo "error: rustup is missing. Install it from the Rust project's site (rustup.rs), then run this again." >&2
    exit 1
fi

# The values of rust-toolchain.toml (a flat file we own: channel, targets, components).
channel=$(sed -n 's/^channel *= *"\(.*\)"/\1/p' "$toml")
targets=$(sed -n 's/^targets *= *\[\(.*\)\]/\1/p' "$toml" | tr -d '"' | tr ',' ' ')
components=$(sed -n 's/^components *= *\[\(.*\)\]/\1/p' "$toml" | tr -d '"' | tr ',' ' ')
if [ -z "$channel" ]; then
    echo "error: $toml names no channel" >&2
    exit 1
fi

have_targets=$(rustup +"$channel" target list --installed 2>/dev/null || true)
have_components=$(rustup +"$channel" component list --installed 2>/dev/null || true)
missing=0
for t in $targets; do grep -qx "$t" <<<"$have_targets" || missing=1; done
for c in $components; do grep -q "^$c" <<<"$have_components" || missing=1; done
if [ -z "$have_targets" ] || [ "$missing" = 1 ]; then
    echo "== installing Rust $channel with targets [$targets] and components [$components]"
    args=(toolchain install "$channel" --profile minimal --no-self-update)
    for t in $targets; do args+=(--target "$t"); done
    for c in $components; do args+=(--component "$c"); done
    rustup "${args[@]}"
fi

if [ "${1:-}" = "--qemu" ] && ! command -v qemu-system-arm >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "== qemu-system-arm is missing: installing it with apt-get"
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
