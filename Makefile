# lecal: regenerate the paper's tables from the committed recipes.
CARGO ?= cargo
# Where cargo puts the release build: $CARGO_TARGET_DIR when set, as cargo itself reads it.
TARGET_DIR := $(if $(CARGO_TARGET_DIR),$(CARGO_TARGET_DIR),target)
LECAL := $(TARGET_DIR)/release/lecal
DEVICE ?= auto
DATA ?= data
SCALE ?= full
DEMO_SCALE ?= full

FUZZ_CASES ?= 100000

.PHONY: build demo test test-slurm test-cpus fuzz bench parity cuda table-cifar100 table-cifar10 table-stl10 table-imagenet plan-cifar100 lint clean-demo

build:
	$(CARGO) build --release

$(LECAL): build

# The whole pipeline on the built-in synthetic data, on the CPU, in minutes: the table,
# then its report (results/report/demo/index.html, plots and provenance). DEMO_SCALE=smoke
# runs the seconds-long version of it (the committed results/tables/demo.smoke.md).
demo: build
	$(LECAL) run recipes/demo --device cpu --scale $(DEMO_SCALE)
	$(LECAL) table demo --scale $(DEMO_SCALE)
	$(LECAL) report demo --scale $(DEMO_SCALE)

test:
	$(CARGO) test --all-targets

# Throughput of lecal beside PyTorch's on this machine (installs PyTorch into .bench-venv/
# unless BENCH_PYTHON names a Python that has it). Not part of CI.
bench: build
	LECAL=$(LECAL) scripts/bench.sh

# lecal against PyTorch on identical inputs: logits of every model, every preset's loss and
# gradient, SGD steps, learning rates, a short training replayed; writes PARITY.md.
# PARITY_SEEDS=10 also compares ten seeds a side, each with its own random draws.
# Installs PyTorch into .bench-venv/ unless PARITY_PYTHON names a Python that has it.
parity: build
	LECAL=$(LECAL) scripts/parity.sh

# The CUDA + cuDNN build (target/cuda/release/lecal) from PyPI's CUDA wheels, checked on
# a machine without a GPU.
cuda:
	scripts/cuda-build.sh

# A long fuzz pass over the recipe parser and planner (make test runs a short one).
fuzz:
	LECAL_FUZZ_CASES=$(FUZZ_CASES) $(CARGO) test --test fuzz

# CIFAR-100 (Tables 1 and 2), fetched into $(DATA) when missing; DEVICE=cuda:0 on a GPU.
table-cifar100: build
	$(LECAL) data fetch cifar100 --dir $(DATA)
	$(LECAL) run recipes/cifar100 --device $(DEVICE) --data-dir $(DATA) --scale $(SCALE)
	$(LECAL) table cifar100 --scale $(SCALE)
	$(LECAL) table cifar100-comparison --scale $(SCALE)
	$(LECAL) report cifar100 --scale $(SCALE)
	$(LECAL) report cifar100-comparison --scale $(SCALE)

# CIFAR-10 (Table 1's layout), fetched into $(DATA) when missing.
table-cifar10: build
	$(LECAL) data fetch cifar10 --dir $(DATA)
	$(LECAL) run recipes/cifar10 --device $(DEVICE) --data-dir $(DATA) --scale $(SCALE)
	$(LECAL) table cifar10 --scale $(SCALE)
	$(LECAL) report cifar10 --scale $(SCALE)

# STL-10 (Table 1's layout, at 96x96), fetched into $(DATA) when missing.
table-stl10: build
	$(LECAL) data fetch stl10 --dir $(DATA)
	$(LECAL) run recipes/stl10 --device $(DEVICE) --data-dir $(DATA) --scale $(SCALE)
	$(LECAL) table stl10 --scale $(SCALE)
	$(LECAL) report stl10 --scale $(SCALE)

# ImageNet (ResNet-18/34/50; needs $(DATA)/imagenet, which cannot be fetched: see README).
table-imagenet: build
	$(LECAL) data check imagenet --dir $(DATA)/imagenet
	$(LECAL) run recipes/imagenet --device $(DEVICE) --data-dir $(DATA) --scale $(SCALE)
	$(LECAL) table imagenet --scale $(SCALE)
	$(LECAL) report imagenet --scale $(SCALE)

plan-cifar100: build
	$(LECAL) plan recipes/cifar100 --scale $(SCALE)

lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets -- -D warnings

# Forget the demo's runs and report (they are not committed) so that `make demo` trains again.
clean-demo:
	rm -rf results/runs/synthetic-* results/report/demo

# The Slurm tests on a single-node cluster started here (as root, Debian): installs and
# starts it, runs tests/slurm.rs, stops it.
test-slurm:
	scripts/slurm-local.sh install start
	$(CARGO) test --test slurm -- --ignored --test-threads=1; rc=$$?; scripts/slurm-local.sh stop; exit $$rc

# The same bits on another x86-64 CPU: the tests/cpus.rs table trained natively and on an
# emulated AMD EPYC-Rome (AVX2 and FMA, no AVX-512), compared byte for byte. Installs
# QEMU's user-mode emulator (Debian's qemu-user) when missing.
test-cpus:
	scripts/qemu-user.sh
	$(CARGO) test --test cpus -- --ignored
