#!/usr/bin/env bash
# QEMU's user-mode x86-64 emulator for `make test-cpus` (tests/cpus.rs): installs Debian's
# qemu-user when `qemu-x86_64` (or LECAL_QEMU) is missing, then checks that it emulates a
# CPU with AVX2 and FMA (QEMU 7.2 or newer).
set -euo pipefail
QEMU=${LECAL_QEMU:-qemu-x86_64}
if ! command -v "$QEMU" >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    echo "[qemu-user] installing Debian's qemu-user"
    apt-get update -q >/dev/null || true
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q qemu-user >/dev/null
  else
    echo "[qemu-user] $QEMU not found: install QEMU's user-mode emulator (Debian: qemu-user)" >&2
    exit 1
  fi
fi
version=$("$QEMU" --version | head -n 1)
echo "[qemu-user] $version"
major=$(echo "$version" | sed -n 's/.*version \([0-9]*\)\.\([0-9]*\).*/\1/p')
minor=$(echo "$version" | sed -n 's/.*version \([0-9]*\)\.\([0-9]*\).*/\2/p')
if [ -z "$major" ] || [ "$major" -lt 7 ] || { [ "$major" -eq 7 ] && [ "$minor" -lt 2 ]; }; then
  echo "[qemu-user] $QEMU is older than 7.2, which first emulates AVX2 and FMA" >&2
  exit 1
fi
