#!/usr/bin/env bash
# The GPU check, for a machine with an NVIDIA GPU, its driver and a CUDA 13 build of
# PyTorch 2.11, but no Rust: the lecal binary is built elsewhere (`make cuda`, which
# writes target/cuda/release/lecal) and copied here with this folder.
#
#   scripts/gpu-check.sh [LECAL_BINARY] [OUT_DIR]
#
# 1. one ResNet20 training step on the GPU against the same step on the CPU, with
#    lecal's cuDNN convolution and with candle's;
# 2. a two-epoch KD training run on the GPU, end to end (default convolution);
# 3. train-step throughput of ResNet20 and ResNet110 and the teacher forward pass, with
#    lecal's convolution and with candle's, beside PyTorch on the same GPU
#    (scripts/bench_pytorch.py).
#
# Each step has a time limit, 9 minutes in all, so that one hung step cannot keep the
# others from running within a 10-minute slot.
#
# TORCH_PYTHON names the Python with PyTorch (default: python3); the CUDA and cuDNN
# libraries that lecal needs are taken from its site-packages.
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
LECAL=$(realpath "${1:-$HERE/../target/cuda/release/lecal}")
OUT=$(realpath -m "${2:-${OUT:-gpu-check}}")
PY=${TORCH_PYTHON:-python3}
mkdir -p "$OUT"
exec > >(tee "$OUT/gpu-check.log") 2>&1

SP=$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
for d in "$SP"/nvidia/cu13/lib "$SP"/nvidia/cudnn/lib "$SP"/nvidia/*/lib; do
  [ -d "$d" ] && LD_LIBRARY_PATH=$d${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
done
export LD_LIBRARY_PATH

echo "== machine"
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

status=0
echo "== 1. one training step, GPU against CPU"
timeout 90 "$LECAL" bench --device cuda:0 --check || status=1

echo "== 2. a training run on the GPU"
T=$(mktemp -d)
mkdir -p "$T/recipes/g"
printf 'title = "g"\nrows = ["KD"]\ncolumns = ["ResNet20"]\n' > "$T/recipes/g/g.table.toml"
cat > "$T/recipes/g/kd.toml" <<'EOF'
cell = { table = "g", row = "KD", column = "ResNet20" }
dataset = "synthetic"
synthetic = { train = 2048, test = 500, resolution = 32 }
schedule = { epochs = 2, milestones = [1], batch = 64 }
student = "resnet20"
seeds = [0]
method = "kd"
teachers = [ { model = "resnet56", seeds = [0] } ]
augment = { kind = "cutmix" }
EOF
(cd "$T" && timeout 150 "$LECAL" run recipes/g --device cuda:0 && timeout 30 "$LECAL" table g) || status=1
cp -r "$T/results" "$OUT/run-results" 2>/dev/null
grep -h -E "device|bitwise" "$T"/results/runs/*/run.toml | sort -u

echo "== 3. throughput against PyTorch on this GPU"
timeout 150 "$LECAL" bench --device cuda:0 --models resnet20,resnet110 --parts train,teacher \
  --baseline --min-seconds 5 --csv "$OUT/lecal-gpu.csv" || status=1
timeout 120 "$PY" "$HERE/bench_pytorch.py" --device cuda --lecal "$OUT/lecal-gpu.csv" \
  --markdown "$OUT/gpu-bench.md" --models resnet20,resnet110 --min-seconds 5 || status=1

echo "== done (status $status); results in $OUT"
exit $status
