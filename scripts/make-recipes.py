#!/usr/bin/env python3
"""Writes the cell recipes of the paper's tables (recipes/cifar100, recipes/cifar10,
recipes/stl10, recipes/imagenet) and of
the demo (recipes/demo): one TOML file per table cell.

The recipes are the source of truth and are committed; this script only keeps the many
files of a table consistent. Edit a recipe by hand for a one-off change, or edit the row
list below and rerun (it overwrites the cell recipes it knows, nothing else):

    python3 scripts/make-recipes.py
"""
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "recipes"

# row title, folder, method preset, teacher seeds (None: no teacher), augment, schedule
TABLE1_ROWS = [
    ("Vanilla", "vanilla", "vanilla", None, None, "default"),
    ("Label smoothing", "smoothing", "smoothing", None, None, "default"),
    ("KD (α=0.1, T=3)", "kd", "kd", [0], None, "default"),
    ("SL", "sl", "sl", [0], None, "default"),
    ("Aug-SL", "aug-sl", "sl", [0], "ricap", "default"),
    ("Aug-SL+", "aug-sl-plus", "sl", [0], "ricap", "long"),
    ("En-SL", "en-sl", "en-sl", [0, 1, 2], None, "default"),
    ("KD-SL", "kd-sl", "kd-sl", [0, 1, 2], None, "default"),
    ("Aug-En-SL", "aug-en-sl", "en-sl", [0, 1, 2], "ricap", "default"),
    ("Aug-KD-SL", "aug-kd-sl", "kd-sl", [0, 1, 2], "ricap", "default"),
    ("Aug-En-SL+", "aug-en-sl-plus", "en-sl", [0, 1, 2], "ricap", "long"),
    ("Aug-KD-SL+", "aug-kd-sl-plus", "kd-sl", [0, 1, 2], "ricap", "long"),
]

CIFAR_STUDENTS = [20, 32, 44, 56, 110]


def toml_list(xs):
    return "[" + ", ".join(str(x) for x in xs) + "]"


def write(path, lines):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


def cell(table, row, column, dataset, schedule, student, seeds, method,
         teacher_model=None, teacher_seeds=None, augment=None, extra=(), comment=None,
         teacher_schedule=None):
    lines = []
    if comment:
        lines.append(f"# {comment}")
    lines += [
        f'cell = {{ table = "{table}", row = "{row}", column = "{column}" }}',
        f'dataset = "{dataset}"',
        *extra,
        f"schedule = {schedule}",
        f'student = "{student}"',
        f"seeds = {toml_list(seeds)}",
        f'method = "{method}"',
    ]
    if teacher_seeds is not None:
        ts = f", schedule = {teacher_schedule}" if teacher_schedule else ""
        lines.append(f'teachers = [ {{ model = "{teacher_model}", seeds = {toml_list(teacher_seeds)}{ts} }} ]')
    if augment:
        lines.append(f'augment = {{ kind = "{augment}" }}')
    return lines


def table1(dataset):
    for title, folder, method, tseeds, aug, sched in TABLE1_ROWS:
        for d in CIFAR_STUDENTS:
            write(ROOT / dataset / "table1" / folder / f"resnet{d}.toml", cell(
                dataset, title, f"ResNet{d}", dataset, f'"{sched}"', f"resnet{d}", [0, 1, 2],
                method, "resnet110", tseeds, aug))


IMAGENET_STUDENTS = [18, 34, 50]


def imagenet():
    # Table 1's rows without the "+" ones (the long schedule is CIFAR's and STL-10's), with
    # ResNet-18/34/50 students on the ImageNet schedule; the teachers are the table's own
    # vanilla ResNet-50 runs, as the vanilla ResNet110 runs are on CIFAR.
    for title, folder, method, tseeds, aug, sched in TABLE1_ROWS:
        if sched != "default":
            continue
        for d in IMAGENET_STUDENTS:
            write(ROOT / "imagenet" / "table1" / folder / f"resnet{d}.toml", cell(
                "imagenet", title, f"ResNet{d}", "imagenet", '"imagenet"', f"resnet{d}",
                [0, 1, 2], method, "resnet50", tseeds, aug))


def table2():
    # Teacher ResNet110 -> students ResNet56 and ResNet110. The recipes of the paper's
    # rows repeat Table 1's cells, so the planner maps them onto the same runs; the
    # knowledge-transfer methods it compares with (CRD, CRD+KD, SSKD, WSL) are runs of their own,
    # with the same Vanilla ResNet110 teacher (seed 0).
    rows = [
        ("Vanilla", "vanilla", "vanilla", None, None, "default"),
        ("LS", "smoothing", "smoothing", None, None, "default"),
        ("KD (α=0.1, T=3)", "kd", "kd", [0], None, "default"),
        ("CRD [5]", "crd", "crd", [0], None, "default"),
        ("CRD+KD [5]", "crd-kd", "crd-kd", [0], None, "default"),
        ("SSKD [4]", "sskd", "sskd", [0], None, "default"),
        ("WSL [6]", "wsl", "wsl", [0], None, "default"),
        ("Our best (acc): Aug-SL+", "best-acc", "sl", [0], "ricap", "long"),
        ("Our best (ECE): KD-SL", "best-ece", "kd-sl", [0, 1, 2], None, "default"),
    ]
    for title, folder, method, tseeds, aug, sched in rows:
        for d in [56, 110]:
            write(ROOT / "cifar100" / "table2" / folder / f"resnet{d}.toml", cell(
                "cifar100-comparison", title, f"ResNet{d}", "cifar100", f'"{sched}"',
                f"resnet{d}", [0, 1, 2], method, "resnet110", tseeds, aug))


# Few, small, partly confusable images trained long enough to overfit: the regime in which
# the paper's methods change calibration (see the demo table's note).
DEMO_DATA = 'synthetic = { train = 300, test = 500, resolution = 8, confusion = 0.3 }'
DEMO_SCHEDULES = {
    "default": "{ base = \"default\", epochs = 60, milestones = [45, 53], lr = 0.05, batch = 16 }",
    "long": "{ base = \"default\", epochs = 90, milestones = [60, 75, 85], lr = 0.05, batch = 16 }",
}


def demo():
    # Students ResNet8; teachers the Vanilla ResNet14 runs (seeds 0, 1, 2), which are the
    # demo's Vanilla ResNet14 cell.
    for title, folder, method, tseeds, aug, sched in TABLE1_ROWS:
        students = [8, 14] if folder == "vanilla" else [8]
        for d in students:
            seeds = [0, 1, 2]
            write(ROOT / "demo" / folder / f"resnet{d}.toml", cell(
                "demo", title, f"ResNet{d}", "synthetic", DEMO_SCHEDULES[sched], f"resnet{d}",
                seeds, method, "resnet14", tseeds, aug, extra=[DEMO_DATA],
                # The "+" rows train longer; their teachers stay the Vanilla cell's runs.
                teacher_schedule=DEMO_SCHEDULES["default"] if sched == "long" else None))


if __name__ == "__main__":
    table1("cifar100")
    table1("cifar10")
    table1("stl10")
    imagenet()
    table2()
    demo()
