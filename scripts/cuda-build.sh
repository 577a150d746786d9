#!/usr/bin/env bash
# Builds lecal with CUDA and cuDNN on a machine without a GPU or a system CUDA, then shows
# that the binary starts there: `--device auto` falls back to the CPU with a message and
# `--device cuda:0` fails with a clear error.
#
#   scripts/cuda-build.sh            build target/cuda/release/lecal, then check it
#   scripts/cuda-build.sh --no-check build only
#
# The CUDA 13.0.2 compiler and libraries and cuDNN 9.19 come from PyPI wheels (the pins
# of PyTorch 2.11's CUDA 13 build, so the binary runs against the libraries of such a
# PyTorch installation on a GPU machine) into .cuda-env/. No wheel ships the driver's
# libcuda.so, so a stub is generated from cudarc's driver bindings: every entry point
# returns CUDA_ERROR_NO_DEVICE. The stub is for linking and for the check only; on a GPU
# machine the driver's libcuda.so.1 is used.
set -euo pipefail
cd "$(dirname "$0")/.."

ENV=${CUDA_ENV:-$PWD/.cuda-env}
# candle's kernels are PTX, which the driver compiles for the GPU it runs on. PTX for
# compute capability 7.5, the lowest CUDA 13 supports, runs on every GPU from the T4 on:
# A100 (8.0), A40 and RTX 30 (8.6), L40 and RTX 40 (8.9), H100 and H200 (9.0). lecal
# trains in f32, which needs nothing newer. CUDA_COMPUTE_CAP=90 builds for one GPU only.
COMPUTE_CAP=${CUDA_COMPUTE_CAP:-75}
# The GPUs whose machine code the kernels' PTX must compile to (checked below with ptxas,
# which is what the driver runs on the GPU).
TARGETS=${CUDA_TARGETS:-75 80 86 89 90}
CHECK=1
[ "${1:-}" = "--no-check" ] && CHECK=0

if [ ! -x "$ENV/bin/python" ]; then
  python3 -m venv "$ENV"
fi
if ! "$ENV/bin/python" -c "import nvidia.cu13, nvidia.cudnn" 2>/dev/null \
   || [ ! -x "$("$ENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/nvidia/cu13/bin/nvcc" ]; then
  echo "installing the CUDA 13.0.2 toolkit and cuDNN wheels into $ENV"
  "$ENV/bin/pip" install -q "cuda-toolkit[nvcc,crt,nvvm,cudart,cccl,cublas,curand,nvrtc]==13.0.2"
  "$ENV/bin/pip" install -q --no-deps "nvidia-cudnn-cu13==9.19.0.56"
fi
SP=$("$ENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
CU=$SP/nvidia/cu13
CUDNN=$SP/nvidia/cudnn

# Unversioned names for the linker.
for l in cudart cublas cublasLt nvrtc curand; do
  f=$(cd "$CU/lib" && ls "lib$l.so."* | grep -v alt | sort | head -1)
  ln -sf "$f" "$CU/lib/lib$l.so"
done
ln -sf libcudnn.so.9 "$CUDNN/lib/libcudnn.so"

# The no-device driver stub, from the driver functions cudarc binds.
cargo fetch --locked -q
CUDARC_VERSION=$(awk '/^name = "cudarc"$/ {getline; gsub(/[^0-9.]/, ""); print; exit}' Cargo.lock)
CUDARC_SRC=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/"cudarc-$CUDARC_VERSION" | head -1)
STUBS=$ENV/stubs
mkdir -p "$STUBS"
grep -oE '^\s+fn cu[A-Za-z0-9_]+\(' "$CUDARC_SRC/src/driver/sys/mod.rs" \
  | sed -E 's/^\s+fn (cu[A-Za-z0-9_]+)\(/\1/' | sort -u > "$STUBS/libcuda.syms"
{
  echo 'static const char *msg = "no CUDA device (libcuda stub)";'
  echo 'int cuGetErrorString(int e, const char **s) { (void)e; *s = msg; return 0; }'
  echo 'int cuGetErrorName(int e, const char **s) { (void)e; *s = "CUDA_ERROR_NO_DEVICE"; return 0; }'
  grep -v -x -E 'cuGetErrorString|cuGetErrorName' "$STUBS/libcuda.syms" \
    | awk '{print "int " $1 "(void) { return 100; }"}'
} > "$STUBS/libcuda_stub.c"
cc -shared -fPIC -O1 -o "$STUBS/libcuda.so" -Wl,-soname,libcuda.so.1 "$STUBS/libcuda_stub.c"
ln -sf libcuda.so "$STUBS/libcuda.so.1"

# CUDAFORGE_THREADS: parallel nvcc/ptxas jobs of candle-kernels' build script.
export CUDA_HOME=$CU PATH=$CU/bin:$PATH CUDA_COMPUTE_CAP=$COMPUTE_CAP CUDNN_LIB=$CUDNN
export CUDAFORGE_THREADS=${CUDAFORGE_THREADS:-$(nproc)}
export LIBRARY_PATH=$STUBS:$CU/lib:$CUDNN/lib${LIBRARY_PATH:+:$LIBRARY_PATH}
cargo build --release --locked --features cudnn --target-dir target/cuda
BIN=target/cuda/release/lecal
echo "built $BIN ($(du -h "$BIN" | cut -f1)); it needs:"
readelf -d "$BIN" | grep NEEDED | grep -E "cu|nv" || true

[ "$CHECK" = 1 ] || exit 0

echo "== the kernels' PTX compiled to machine code for each target GPU (ptxas)"
PTX_DIR=$(ls -td target/cuda/release/build/candle-kernels-*/out 2>/dev/null | head -1)
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
n=0
for ptx in "$PTX_DIR"/*.ptx; do
  for sm in $TARGETS; do
    "$CU/bin/ptxas" -arch="sm_$sm" -o "$T/k.cubin" "$ptx" \
      || { echo "FAIL: $(basename "$ptx") does not compile for sm_$sm"; exit 1; }
    n=$((n + 1))
  done
done
[ "$n" -gt 0 ] || { echo "FAIL: no PTX found under target/cuda"; exit 1; }
echo "ok: $(ls "$PTX_DIR"/*.ptx | wc -l) PTX files ($(grep -m1 -h '^.target' "$PTX_DIR"/affine.ptx)) compile for sm_${TARGETS// /, sm_}"

echo "== checking the CUDA build on a machine without a GPU (driver stub)"
export LD_LIBRARY_PATH=$STUBS:$CU/lib:$CUDNN/lib
mkdir -p "$T/recipes/c"
printf 'title = "c"\nrows = ["Vanilla"]\ncolumns = ["ResNet8"]\n' > "$T/recipes/c/c.table.toml"
cat > "$T/recipes/c/v.toml" <<'EOF'
cell = { table = "c", row = "Vanilla", column = "ResNet8" }
dataset = "synthetic"
synthetic = { train = 64, test = 20, resolution = 8 }
schedule = { epochs = 1, milestones = [], batch = 32 }
student = "resnet8"
seeds = [0]
EOF
LECAL=$PWD/$BIN
(cd "$T" && "$LECAL" run recipes/c --device auto) > "$T/auto.log" 2>&1 \
  || { cat "$T/auto.log"; echo "FAIL: --device auto did not fall back to the CPU"; exit 1; }
grep -q "running on the CPU" "$T/auto.log" \
  || { cat "$T/auto.log"; echo "FAIL: --device auto did not say it fell back"; exit 1; }
grep -q 'device = "cpu' "$T"/results/runs/*/run.toml \
  || { echo "FAIL: the run did not record the CPU"; exit 1; }
echo "ok: --device auto falls back to the CPU: $(grep -m1 "^note:" "$T/auto.log")"
if (cd "$T" && "$LECAL" --results other run recipes/c --device cuda:0) > "$T/cuda.log" 2>&1; then
  cat "$T/cuda.log"; echo "FAIL: --device cuda:0 succeeded without a GPU"; exit 1
fi
grep -q "cuda:0: cannot open the GPU" "$T/cuda.log" \
  || { cat "$T/cuda.log"; echo "FAIL: --device cuda:0 gave no clear error"; exit 1; }
[ ! -e "$T/other" ] || { echo "FAIL: --device cuda:0 wrote results"; exit 1; }
echo "ok: --device cuda:0 fails clearly: $(grep -m1 error "$T/cuda.log")"
