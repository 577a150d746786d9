#!/usr/bin/env bash
# make bench: lecal's throughput beside PyTorch's, measured in one invocation on this
# machine. Installs PyTorch into .bench-venv/ when no Python with PyTorch is given
# (BENCH_PYTHON=/path/to/python to use another one).
#
#   BENCH_SECONDS=5   time each measurement for at least this long
#   BENCH_DEVICE=cpu  or cuda:0 (with a CUDA build of lecal as LECAL)
#   BENCH_PARTS=...   lecal bench --parts (default: all of them)
#   LECAL=target/release/lecal
set -euo pipefail
cd "$(dirname "$0")/.."

LECAL=${LECAL:-${CARGO_TARGET_DIR:-target}/release/lecal}
SECONDS_EACH=${BENCH_SECONDS:-5}
DEVICE=${BENCH_DEVICE:-cpu}
PY=${BENCH_PYTHON:-.bench-venv/bin/python}
OUT=target/bench
mkdir -p "$OUT"

if ! "$PY" -c "import torch, torchvision" 2>/dev/null; then
  if [ -n "${BENCH_PYTHON:-}" ]; then
    echo "BENCH_PYTHON=$BENCH_PYTHON has no PyTorch" >&2
    exit 1
  fi
  echo "installing PyTorch 2.11 and torchvision 0.26 into .bench-venv (once)"
  python3 -m venv .bench-venv
  .bench-venv/bin/pip install -q "torch==2.11.0" "torchvision==0.26.0"
  PY=.bench-venv/bin/python
fi

THREADS=$(nproc)
echo "== lecal ($DEVICE, $THREADS threads)"
PARTS=()
if [ -n "${BENCH_PARTS:-}" ]; then PARTS=(--parts "$BENCH_PARTS"); fi
"$LECAL" bench --device "$DEVICE" --baseline --min-seconds "$SECONDS_EACH" --csv "$OUT/lecal.csv" \
  --imagenet-dir "$OUT/imagenet" "${PARTS[@]}"
echo "== PyTorch"
TORCH_DEVICE=cpu
case "$DEVICE" in cuda*) TORCH_DEVICE=cuda ;; esac
"$PY" scripts/bench_pytorch.py --lecal "$OUT/lecal.csv" --markdown "$OUT/bench.md" \
  --threads "$THREADS" --min-seconds "$SECONDS_EACH" --device "$TORCH_DEVICE" \
  --imagenet-dir "$OUT/imagenet"
echo "wrote $OUT/lecal.csv and $OUT/bench.md"
