#!/usr/bin/env bash
# make parity: lecal against PyTorch on identical inputs (see scripts/parity.py), written
# to PARITY.md. Installs PyTorch, safetensors and numpy into .bench-venv/ when no Python
# with them is given (PARITY_PYTHON=/path/to/python to use another one).
#
#   LECAL=target/release/lecal   PARITY_REPORT=PARITY.md
#   PARITY_SEEDS=10   also train that many seeds of a small setting on each side, each
#                     with its own random draws, and compare the samples (minutes)
set -euo pipefail
cd "$(dirname "$0")/.."

LECAL=${LECAL:-${CARGO_TARGET_DIR:-target}/release/lecal}
PY=${PARITY_PYTHON:-.bench-venv/bin/python}
REPORT=${PARITY_REPORT:-PARITY.md}
OUT=target/parity

if ! "$PY" -c "import torch, safetensors, numpy" 2>/dev/null; then
  if [ -n "${PARITY_PYTHON:-}" ]; then
    echo "PARITY_PYTHON=$PARITY_PYTHON lacks torch, safetensors or numpy" >&2
    exit 1
  fi
  echo "installing PyTorch 2.11, safetensors and numpy into .bench-venv (once)"
  python3 -m venv .bench-venv
  .bench-venv/bin/pip install -q "torch==2.11.0" "safetensors==0.8.0" "numpy==2.4.6"
  PY=.bench-venv/bin/python
fi

rm -rf "$OUT"
echo "== lecal: inputs and outputs into $OUT"
"$LECAL" parity "$OUT" --seeds "${PARITY_SEEDS:-0}"
echo "== PyTorch: the same from the same inputs"
"$PY" scripts/parity.py --dir "$OUT" --report "$REPORT" --threads "$(nproc)" --command "make parity"
