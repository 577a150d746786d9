#!/usr/bin/env bash
# The GPU check: one prepared command for a machine with an NVIDIA GPU, its driver and a
# CUDA 13 build of PyTorch 2.11, but possibly no Rust and no internet. The lecal binary is
# built elsewhere (`make cuda` writes target/cuda/release/lecal, stripped) and copied here
# with this folder.
#
#   scripts/gpu-check.sh [--dry-run] [LECAL_BINARY] [OUT_DIR]
#
# Steps, each with its own time limit (7 min 40 s in all at most), so that one hung step
# cannot keep the others from running and the whole check fits 8 minutes:
#  0. the machine, the libraries: CUDA 13 and cuDNN 9 from PyTorch's site-packages
#     (nvidia/*/lib), and that the binary loads against them;
#  1. one ResNet20 training step on the GPU against the same step on the CPU, with
#     lecal's cuDNN convolution and with candle's (`lecal bench --check`);
#  2. throughput: the training step of ResNet20, 56 and 110, each alone and as fused
#     networks of 4 and 6 students, and the ResNet110 teacher's forward pass, with
#     PyTorch eager on the same GPU beside them (scripts/bench_pytorch.py);
#  3. one real-size epoch (50,000 synthetic CIFAR-shaped images, 100 classes) of a
#     cohort of six ResNet20 students, fused (the CUDA default), end to end;
#  4. Table 1's GPU-hours from step 2's measurements (`lecal plan --estimate`).
#
# At most 8 files are written, all under OUT_DIR (default ./gpu-check): gpu-check.log,
# lecal-gpu.csv, gpu-bench.md, epoch.csv, estimate.txt.
#
# TORCH_PYTHON names the Python with PyTorch (default: python3). --dry-run prints the
# steps and runs nothing, on any machine.
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
DRY=0
if [ "${1:-}" = "--dry-run" ]; then
  DRY=1
  shift
fi
LECAL=$(realpath -m "${1:-$HERE/../target/cuda/release/lecal}")
OUT=$(realpath -m "${2:-${OUT:-gpu-check}}")
PY=${TORCH_PYTHON:-python3}
RECIPES=$(realpath -m "$HERE/../recipes/cifar100")

# step LIMIT_SECONDS TITLE COMMAND...: runs COMMAND under its limit (only prints it with
# --dry-run); a failure fails the check, and the next steps still run.
status=0
step() {
  local limit=$1 title=$2
  shift 2
  echo "== $title (limit ${limit} s)"
  echo "   \$ $*"
  if [ "$DRY" = 1 ]; then
    return 0
  fi
  timeout "$limit" "$@" || { echo "FAILED: $title"; status=1; }
}

if [ "$DRY" = 1 ]; then
  echo "gpu-check, dry run: lecal $LECAL; results in $OUT; PyTorch's Python: $PY"
else
  mkdir -p "$OUT"
  exec > >(tee "$OUT/gpu-check.log") 2>&1
  SP=$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  for d in "$SP"/nvidia/cu13/lib "$SP"/nvidia/cudnn/lib "$SP"/nvidia/*/lib; do
    [ -d "$d" ] && LD_LIBRARY_PATH=$d${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
  done
  export LD_LIBRARY_PATH
fi

echo "== 0. the machine and the libraries"
if [ "$DRY" = 1 ]; then
  echo "   nvidia-smi; torch's CUDA and cuDNN versions; ldd $LECAL finds every library"
else
  date -u
  nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap --format=csv,noheader
  grep -m1 "model name" /proc/cpuinfo
  "$PY" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, "cudnn", torch.backends.cudnn.version())'
  echo "lecal: $LECAL"
  if ldd "$LECAL" | grep "not found"; then
    echo "FAIL: libraries missing (see above)"
    exit 1
  fi
  "$LECAL" --version
fi

step 60 "1. one training step, GPU against CPU" \
  "$LECAL" bench --device cuda:0 --check

step 170 "2a. lecal: ResNet20/56/110 alone and fused x4 and x6, the teacher" \
  "$LECAL" bench --device cuda:0 --models resnet20,resnet56,resnet110 \
  --parts train,teacher,fused --fused-members 4,6 --baseline --min-seconds 3 \
  --csv "$OUT/lecal-gpu.csv"
step 90 "2b. PyTorch eager on the same GPU" \
  "$PY" "$HERE/bench_pytorch.py" --device cuda --lecal "$OUT/lecal-gpu.csv" \
  --markdown "$OUT/gpu-bench.md" --models resnet20,resnet56,resnet110 --min-seconds 3

# Six runs that see the same batches (one seed, one batch size) and differ only in their
# learning rate: one cohort, one fused group.
T=$(mktemp -d)
mkdir -p "$T/recipes/g"
printf 'title = "g"\nrows = ["a", "b", "c", "d", "e", "f"]\ncolumns = ["ResNet20"]\n' \
  > "$T/recipes/g/g.table.toml"
set -- a:0.1 b:0.05 c:0.02 d:0.01 e:0.2 f:0.15
for cell in "$@"; do
  row=${cell%%:*}
  lr=${cell#*:}
  {
    echo "cell = { table = \"g\", row = \"$row\", column = \"ResNet20\" }"
    echo 'dataset = "synthetic"'
    echo 'synthetic = { train = 50000, test = 10000, resolution = 32, classes = 100 }'
    echo "schedule = { epochs = 1, milestones = [], batch = 64, lr = $lr }"
    echo 'student = "resnet20"'
    echo 'seeds = [0]'
  } > "$T/recipes/g/$row.toml"
done
# Trains the cohort, writes every run's epochs.csv rows (its id first) to epoch.csv and
# prints the device the runs recorded.
{
  echo 'set -euo pipefail'
  echo "cd '$T'"
  echo "time '$LECAL' run recipes/g --device cuda:0"
  echo 'for r in results/runs/*/; do'
  echo '  awk -v id="$(basename "$r")" '"'"'NR > 1 { print id "," $0 }'"'"' "$r/epochs.csv"'
  echo "done > '$OUT/epoch.csv'"
  echo "grep -h -E 'device|bitwise|compute' results/runs/*/run.toml | sort -u"
} > "$T/epoch.sh"
[ "$DRY" = 1 ] && sed 's/^/     /' "$T/epoch.sh"
step 120 "3. one real-size epoch of six fused ResNet20 students (300,000 images)" \
  bash "$T/epoch.sh"

step 20 "4. Table 1 on this GPU, from step 2's measurements" \
  bash -c "'$LECAL' --results '$T/none' plan '$RECIPES' --estimate --device cuda \
    --bench '$OUT/lecal-gpu.csv' > '$OUT/estimate.txt'; grep -A12 '^estimate' '$OUT/estimate.txt'"

rm -rf "$T"
echo "== done (status $status); results in $OUT"
exit $status
