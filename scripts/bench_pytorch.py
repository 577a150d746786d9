#!/usr/bin/env python3
"""PyTorch's side of `make bench`: measures with PyTorch, on the same machine and in the
same invocation, what `lecal bench --csv OUT/lecal.csv` measured, and prints both side by
side with the ratio lecal/PyTorch (above 1: lecal is faster). The same table is written as
Markdown.

    python scripts/bench_pytorch.py --lecal OUT/lecal.csv --markdown OUT/bench.md \\
        [--threads N] [--min-seconds S] [--device cpu|cuda] \\
        [--models resnet20,resnet56,resnet110]

Only the measurements present in the lecal CSV are made (a quick lecal run with few models
makes a quick PyTorch run); every row of the CSV, baseline rows included, gets a ratio
against the PyTorch number of its `what`.

Everything is timed as `lecal bench` times it (src/bench.rs): one warm-up call, then
repeat until at least --min-seconds have passed and at least 2 iterations;
images/s = iterations * images per iteration / elapsed. On CUDA the device is
synchronised before the clock is read.

Batch 64, 32x32 RGB images, 100 classes, float32.

  train <model>        one SGD step (lr 0.1, momentum 0.9, weight decay 5e-4) of a CIFAR
                       ResNet (option B shortcuts) in training mode on a fixed random batch:
                       forward, cross-entropy, backward, update, reading the loss back.
  fused Kx <model>     lecal's K runs as one fused network, against PyTorch eager
                       training the same K runs one after another: one run's train
                       <model> step (images/s count every run's images).
  teacher resnet110    forward pass of ResNet110 in evaluation mode without a graph,
                       logits copied back to the CPU.
  crop+flip+normalise  one epoch over 2048 uint8 images in batches of 64: random crop with
                       4 pixels of zero padding, random horizontal flip, normalise.
  mixup/cutmix/ricap   32 times: copy a float batch, mix it.
  imagenet-loader      one epoch over the generated JPEGs lecal wrote to --imagenet-dir
                       (train/<class>/*.JPEG, about 400x350, quality 90): torchvision's
                       ImageFolder with RandomResizedCrop(224), RandomHorizontalFlip(),
                       ToTensor(), Normalize(ImageNet's mean and std), through a DataLoader
                       (batch 64, shuffled, one worker process per thread, kept alive
                       between epochs), as lecal's loader with one worker thread per core.
  imagenet-decode 1 thread  the same files, in memory, decoded to RGB by PIL
                       (libjpeg-turbo), what ImageFolder reads with, on one thread.
  imagenet-resize 1 thread  the same images, decoded first, resized by PIL (antialiased
                       bilinear) to a shorter side of 256, as Resize(256), on one thread.

The data measurements run on the CPU whatever --device says, as lecal's data pipeline does.
"""
import argparse
import csv
import datetime
import math
import os
import platform
import random
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

# The CIFAR ResNet (He et al. 2016, section 4.2) with projection ("option B") shortcuts.
from cifar_resnet import ResNet as CifarResNet

BATCH = 64
CLASSES = 100
SIZE = 32
MODEL_DEPTHS = {"resnet20": 20, "resnet56": 56, "resnet110": 110}


# ---------------------------------------------------------------------------------------
# Timing, as lecal's `time` in src/bench.rs.


def timed(step, images, min_seconds, device):
    """Repeats `step` (one warm-up first) until `min_seconds` have passed, at least twice.
    Returns (images per second, iterations, seconds)."""
    cuda = device.type == "cuda"

    def sync():
        if cuda:
            torch.cuda.synchronize(device)

    step()
    sync()
    start = time.perf_counter()
    n = 0
    while True:
        step()
        n += 1
        sync()
        elapsed = time.perf_counter() - start
        if n >= 2 and elapsed >= min_seconds:
            break
    return n * images / elapsed, n, elapsed


def random_batch(device):
    """A fixed random batch and fixed random labels (seed 0)."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(BATCH, 3, SIZE, SIZE, generator=g)
    y = torch.randint(0, CLASSES, (BATCH,), generator=g)
    return x.to(device), y.to(device)


# ---------------------------------------------------------------------------------------
# The measurements. Each returns (step, images per iteration, device it runs on).


def train_step(model_name, device):
    torch.manual_seed(0)
    net = CifarResNet(MODEL_DEPTHS[model_name], CLASSES).to(device).train()
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    x, y = random_batch(device)

    def step():
        loss = F.cross_entropy(net(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        # lecal reads the loss back every step, as a trainer that logs it does.
        loss.item()

    return step, BATCH, device


def teacher_step(device):
    torch.manual_seed(0)
    net = CifarResNet(110, CLASSES).to(device).eval()
    x, _ = random_batch(device)

    def step():
        with torch.no_grad():
            logits = net(x)
        # lecal copies the logits back too.
        logits.cpu()

    return step, BATCH, device


def crop_flip_normalise_step():
    # PyTorch tensor ops on a whole batch: the fair in-process reference for lecal's data
    # pipeline (no DataLoader workers, no per-image Python, no PIL/torchvision transforms).
    cpu = torch.device("cpu")
    torch.manual_seed(0)
    n, pad = 2048, 4
    images = torch.randint(0, 256, (n, 3, SIZE, SIZE), dtype=torch.uint8)
    # The order is drawn once, outside the timing, as in lecal.
    order = torch.randperm(n)
    batches = list(torch.split(order, BATCH))
    mean = torch.full((1, 3, 1, 1), 0.5 * 255)
    std = torch.full((1, 3, 1, 1), 0.25 * 255)

    def step():
        for idx in batches:
            b = idx.numel()
            padded = F.pad(images[idx], (pad, pad, pad, pad))  # zero bytes
            dx = torch.randint(0, 2 * pad + 1, (b,))
            dy = torch.randint(0, 2 * pad + 1, (b,))
            # All 9x9 windows as a view (b, 3, 9, 9, 32, 32), then one gather of each
            # image's window (about twice as fast as indexing rows and columns).
            windows = padded.unfold(2, SIZE, 1).unfold(3, SIZE, 1)
            crop = windows[torch.arange(b), :, dy, dx]
            flip = torch.rand(b) < 0.5
            crop = torch.where(flip.view(b, 1, 1, 1), crop.flip(3), crop)
            out = crop.float().sub_(mean).div_(std)
        return out

    return step, n, cpu


def mix_step(name):
    cpu = torch.device("cpu")
    torch.manual_seed(0)
    rng = random.Random(0)
    base = torch.randn(BATCH, 3, SIZE, SIZE)
    labels = torch.randint(0, CLASSES, (BATCH,))
    h = w = SIZE

    def mixup():
        x = base.clone()
        lam = rng.betavariate(1.0, 1.0)
        perm = torch.randperm(BATCH)
        x = lam * x + (1.0 - lam) * x[perm]
        return x, (labels, labels[perm], lam)

    def cutmix():
        x = base.clone()
        lam = rng.betavariate(1.0, 1.0)
        perm = torch.randperm(BATCH)
        # The box of lecal's src/data/mix.rs: area about 1 - lam, centre anywhere,
        # clipped to the image.
        r = math.sqrt(1.0 - lam)
        cw, ch = math.floor(w * r), math.floor(h * r)
        cx, cy = rng.randrange(w), rng.randrange(h)
        x0, y0 = max(cx - cw // 2, 0), max(cy - ch // 2, 0)
        x1, y1 = min(cx + cw // 2, w), min(cy + ch // 2, h)
        x[:, :, y0:y1, x0:x1] = x[perm, :, y0:y1, x0:x1]
        lam = 1.0 - (x1 - x0) * (y1 - y0) / (w * h)
        return x, (labels, labels[perm], lam)

    def ricap(beta=0.3):
        x = base.clone()
        pw = round(w * rng.betavariate(beta, beta))
        ph = round(h * rng.betavariate(beta, beta))
        sizes = [(pw, ph), (w - pw, ph), (pw, h - ph), (w - pw, h - ph)]
        patches, targets = [], []
        for sw, sh in sizes:
            perm = torch.randperm(BATCH)
            # One offset inside the source images per patch, shared across the batch
            # (as lecal and the RICAP authors' code).
            ox = rng.randrange(w - sw + 1)
            oy = rng.randrange(h - sh + 1)
            patches.append(x[perm, :, oy : oy + sh, ox : ox + sw])
            targets.append((labels[perm], sw * sh / (w * h)))
        top = torch.cat(patches[0:2], dim=3)
        bottom = torch.cat(patches[2:4], dim=3)
        return torch.cat([top, bottom], dim=2), targets

    mix = {"mixup": mixup, "cutmix": cutmix, "ricap": ricap}[name]

    def step():
        for _ in range(32):
            out = mix()
        return out

    return step, 32 * BATCH, cpu


def imagenet_loader_step(root, workers):
    from torchvision import datasets, transforms

    cpu = torch.device("cpu")
    torch.manual_seed(0)
    tf = transforms.Compose(
        [
            transforms.RandomResizedCrop(224),
            transforms.RandomHorizontalFlip(),
            transforms.ToTensor(),
            transforms.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
        ]
    )
    ds = datasets.ImageFolder(os.path.join(root, "train"), tf)
    loader = torch.utils.data.DataLoader(
        ds, batch_size=64, shuffle=True, num_workers=workers, persistent_workers=workers > 0
    )

    def step():
        for x, _ in loader:
            out = x
        return out

    return step, len(ds), cpu


def pil_decode_step(root):
    """PIL's decode (libjpeg-turbo), what torchvision's ImageFolder reads with, one thread,
    over the same files held in memory as lecal's decoder rows."""
    import io

    from PIL import Image

    train = os.path.join(root, "train")
    files = []
    for c in sorted(os.listdir(train)):
        for f in sorted(os.listdir(os.path.join(train, c))):
            with open(os.path.join(train, c, f), "rb") as fh:
                files.append(fh.read())

    def step():
        for b in files:
            im = Image.open(io.BytesIO(b)).convert("RGB")
            im.load()
        return im

    return step, len(files), torch.device("cpu")


def pil_resize_step(root):
    """PIL's antialiased bilinear resize to a shorter side of 256, as torchvision's
    Resize(256) on a PIL image, one thread, over the same files decoded first."""
    from PIL import Image

    train = os.path.join(root, "train")
    images = []
    for c in sorted(os.listdir(train)):
        for f in sorted(os.listdir(os.path.join(train, c))):
            im = Image.open(os.path.join(train, c, f)).convert("RGB")
            im.load()
            w, h = im.size
            # torchvision's size rule: the shorter side to 256, the other floored.
            size = (256, int(256 * h / w)) if w <= h else (int(256 * w / h), 256)
            images.append((im, size))

    def step():
        for im, size in images:
            out = im.resize(size, Image.BILINEAR)
        return out

    return step, len(images), torch.device("cpu")


def basis(what):
    """The PyTorch measurement a lecal `what` is compared with: `fused Kx <model>` (K runs
    trained as one fused network by lecal) against PyTorch eager training the same K runs
    one after another, whose images per second are one run's `train <model>`."""
    parts = what.split()
    if len(parts) == 3 and parts[0] == "fused" and parts[1].endswith("x"):
        return f"train {parts[2]}"
    return what


def make_step(what, device, models, imagenet_dir=None, threads=1):
    """The step of one lecal `what`, or None when it is not measured here."""
    if what.startswith("train "):
        m = what[len("train ") :]
        if m in MODEL_DEPTHS and m in models:
            return train_step(m, device)
        return None
    if what == "teacher resnet110":
        return teacher_step(device)
    if what == "crop+flip+normalise":
        return crop_flip_normalise_step()
    if what in ("mixup", "cutmix", "ricap"):
        return mix_step(what)
    if what == "imagenet-loader" and imagenet_dir:
        return imagenet_loader_step(imagenet_dir, threads)
    if what == "imagenet-decode 1 thread" and imagenet_dir:
        return pil_decode_step(imagenet_dir)
    if what == "imagenet-resize 1 thread" and imagenet_dir:
        return pil_resize_step(imagenet_dir)
    return None


# ---------------------------------------------------------------------------------------
# Reporting.


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def read_lecal(path):
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    need = {"what", "implementation", "images_per_second"}
    if rows and not need <= set(rows[0]):
        sys.exit(f"{path}: expected columns {sorted(need)}, got {list(rows[0])}")
    return rows


def label(what, implementation):
    """`train resnet20` for plain lecal, `train resnet20 (candle's conv)` for
    `lecal, candle's conv`, `train resnet20 (cuda)` for `lecal (cuda)`."""
    rest = implementation.strip()
    if rest.startswith("lecal"):
        rest = rest[len("lecal") :].strip(" ,")
        if rest.startswith("(") and rest.endswith(")"):
            rest = rest[1:-1]
    return f"{what} ({rest})" if rest else what


def fmt_ips(v):
    return "-" if v is None else f"{v:.1f}"


def fmt_ratio(a, b):
    return "-" if a is None or b is None or b == 0 else f"{a / b:.2f}"


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--lecal", required=True, help="CSV written by `lecal bench --csv`")
    p.add_argument("--markdown", required=True, help="Markdown table to write")
    p.add_argument(
        "--threads", type=int, default=os.cpu_count(), help="CPU threads (default: all)"
    )
    p.add_argument(
        "--min-seconds", type=float, default=5.0, help="time each measurement this long"
    )
    p.add_argument(
        "--device", default="cpu", help="cpu or cuda (or cuda:N), for training and teacher"
    )
    p.add_argument(
        "--models",
        default="resnet20,resnet56,resnet110",
        help="models whose training step to time (those in the lecal CSV only)",
    )
    p.add_argument(
        "--imagenet-dir",
        default="target/bench/imagenet",
        help="the JPEG folder `lecal bench --parts imagenet-loader` wrote",
    )
    a = p.parse_args()

    models = [m.strip() for m in a.models.split(",") if m.strip()]
    for m in models:
        if m not in MODEL_DEPTHS:
            p.error(f"unknown model {m!r} (known: {', '.join(MODEL_DEPTHS)})")
    device = torch.device(a.device)
    if device.type not in ("cpu", "cuda"):
        p.error(f"--device must be cpu or cuda, not {a.device!r}")
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit("--device cuda: PyTorch sees no CUDA device")
    # The data measurements run on the CPU even with --device cuda.
    torch.set_num_threads(a.threads)

    rows = read_lecal(a.lecal)
    date = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    cpu = cpu_model()
    cores = os.cpu_count()
    dev = str(device)
    if device.type == "cuda":
        dev += f" ({torch.cuda.get_device_name(device)}; data measurements on the CPU)"
    header = [
        ("date", date),
        ("machine", f"{cpu}, {cores} logical CPUs"),
        ("torch", torch.__version__),
        ("device", dev),
        ("threads", str(torch.get_num_threads())),
        ("min seconds", f"{a.min_seconds:g}"),
    ]
    for k, v in header:
        print(f"{k + ':':<13}{v}")
    print()

    # One PyTorch measurement per `what` of the lecal CSV, in its order.
    pytorch = {}
    for r in rows:
        what = basis(r["what"])
        if what in pytorch:
            continue
        # A fused row's PyTorch baseline is measured whatever --models says.
        allowed = models if what == r["what"] else list(MODEL_DEPTHS)
        made = make_step(what, device, allowed, a.imagenet_dir, a.threads)
        if made is None:
            pytorch[what] = None
            print(f"  {what:<22} not measured with PyTorch", file=sys.stderr, flush=True)
            continue
        step, images, on = made
        ips, n, s = timed(step, images, a.min_seconds, on)
        pytorch[what] = ips
        print(
            f"  {what:<22} {'pytorch':<24} {ips:>10.1f} img/s  ({n} iterations, {s:.1f} s)",
            file=sys.stderr,
            flush=True,
        )
        del step
    print(file=sys.stderr)

    cols = ["measurement", "lecal img/s", "PyTorch img/s", "ratio (lecal/PyTorch)"]
    table = []
    for r in rows:
        lecal = float(r["images_per_second"])
        torch_ips = pytorch.get(basis(r["what"]))
        table.append(
            [
                label(r["what"], r["implementation"]),
                fmt_ips(lecal),
                fmt_ips(torch_ips),
                fmt_ratio(lecal, torch_ips),
            ]
        )

    widths = [max([len(c)] + [len(t[i]) for t in table]) for i, c in enumerate(cols)]

    def line(cells):
        return "  ".join(
            c.ljust(wd) if i == 0 else c.rjust(wd)
            for i, (c, wd) in enumerate(zip(cells, widths))
        )

    print(line(cols))
    print("  ".join("-" * wd for wd in widths))
    for t in table:
        print(line(t))

    md = ["# lecal and PyTorch throughput", ""]
    md += [f"- {k}: {v}" for k, v in header]
    md += [
        "",
        "Images per second (higher is better); ratio above 1: lecal is faster. "
        "Batch 64, 32x32 RGB, 100 classes, float32; imagenet-loader: JPEGs to 224x224 "
        "training crops, batch 64, one worker per thread.",
        "",
        "| " + " | ".join(cols) + " |",
        "|" + "|".join([":---"] + ["---:"] * (len(cols) - 1)) + "|",
    ]
    md += ["| " + " | ".join(t) + " |" for t in table]
    # lecal's cohort line: the same runs run by run and as one cohort, wall times compared.
    by_what = {r["what"]: r for r in rows}
    alone, cohort = by_what.get("table-1 rows, run by run"), by_what.get("table-1 rows, as a cohort")
    if alone and cohort:
        a_s, c_s = float(alone["seconds"]), float(cohort["seconds"])
        ratio = f"cohort wall time / run-by-run wall time: {c_s / a_s:.2f} ({c_s:.1f} s / {a_s:.1f} s)"
        print(ratio)
        md += [
            "",
            "Table 1's KD, SL, En-SL and KD-SL rows at a small scale (students ResNet20 to "
            "ResNet110, one seed, one epoch; three ResNet110 teachers trained beforehand), "
            "trained run by run and as one cohort in the same invocation: " + ratio + ".",
        ]
    out = Path(a.markdown)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(md) + "\n")
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
