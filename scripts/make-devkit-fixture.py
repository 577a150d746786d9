#!/usr/bin/env python3
"""Writes a small stand-in for ILSVRC2012_devkit_t12/data/meta.mat, the file lecal reads
to map the devkit's validation ground truth (ILSVRC2012_IDs) to wnids
(src/data/imagenet/devkit.rs, tested in src/data/imagenet/devkit_tests.rs):

    tests/fixtures/devkit-meta.mat               compressed (as MATLAB's default -v7), 1xN
    tests/fixtures/devkit-meta-uncompressed.mat  uncompressed (-v6), Nx1
    tests/fixtures/devkit-meta.csv               the synsets written: ILSVRC2012_ID,WNID,num_children

    python scripts/make-devkit-fixture.py   (needs SciPy and NumPy)

The variable `synsets` is a struct array with the devkit's fields (ILSVRC2012_ID, WNID,
words, gloss, num_children, children, wordnet_height, num_train_images): five leaf
classes whose IDs are not in sorted-wnid order, as in the real file, and one non-leaf
synset whose `children` lists IDs. A cell array `notes` is written before it, so the
reader has to step over a variable it does not use.
"""
from pathlib import Path

import numpy as np
from scipy.io import savemat

FIELDS = [
    "ILSVRC2012_ID",
    "WNID",
    "words",
    "gloss",
    "num_children",
    "children",
    "wordnet_height",
    "num_train_images",
]
# (ID, wnid, words, gloss, children, wordnet height, training images)
SYNSETS = [
    (1, "n02119789", "kit fox, Vulpes macrotis", "small grey fox", [], 0, 1300),
    (2, "n02100735", "English setter", "a long-haired setter", [], 0, 1300),
    (3, "n02110185", "Siberian husky", "breed of sled dog", [], 0, 1300),
    (4, "n02096294", "Australian terrier", "a small wiry terrier", [], 0, 1300),
    (5, "n02102040", "English springer", "a springer spaniel", [], 0, 1300),
    (1001, "n02084071", "dog, domestic dog", "a canine (café, naïve: not ASCII)", [2, 3, 4, 5], 1, 5200),
]


def struct_array(shape):
    arr = np.zeros(shape, dtype=[(f, "O") for f in FIELDS])
    flat = arr.reshape(-1)
    for k, (sid, wnid, words, gloss, children, height, n_train) in enumerate(SYNSETS):
        flat[k] = (
            float(sid),
            wnid,
            words,
            gloss,
            float(len(children)),
            np.array([children], dtype=np.float64).reshape(1, len(children)),
            float(height),
            float(n_train),
        )
    return arr


def main():
    out = Path(__file__).resolve().parent.parent / "tests" / "fixtures"
    notes = np.empty((1, 2), dtype=object)
    notes[0, 0] = "written by scripts/make-devkit-fixture.py"
    notes[0, 1] = np.array([[1.0, 2.0, 3.0]])
    n = len(SYNSETS)
    for name, shape, compress in [
        ("devkit-meta.mat", (1, n), True),
        ("devkit-meta-uncompressed.mat", (n, 1), False),
    ]:
        savemat(
            out / name,
            {"notes": notes, "synsets": struct_array(shape)},
            do_compression=compress,
            oned_as="row",
        )
    lines = ["ILSVRC2012_ID,WNID,num_children"]
    lines += [f"{s[0]},{s[1]},{len(s[4])}" for s in SYNSETS]
    (out / "devkit-meta.csv").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
