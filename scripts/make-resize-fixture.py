#!/usr/bin/env python3
"""Writes tests/fixtures/pil_resize.csv: Pillow's bilinear resize of a generated 41x29 RGB
image for a few regions, output sizes and windows, the reference lecal's
`data::imagenet::resize` is checked against value for value (src/data/imagenet/tests.rs).

    python scripts/make-resize-fixture.py   (needs Pillow and NumPy)

The source pixel (x, y, channel c) is (x*37 + y*91 + c*53 + (x*y % 17)*7) % 256, a pattern
with both smooth ramps and sharp steps that lecal's test builds the same way.
"""
from pathlib import Path

import numpy as np
from PIL import Image

W, H = 41, 29
# (region x, y, w, h), output (w, h), window (x, y, w, h) of the output
CASES = [
    ((0, 0, W, H), (13, 9), None),
    ((5, 3, 30, 20), (17, 23), None),
    ((0, 0, W, H), (64, 50), None),
    ((0, 0, W, H), (20, 14), (3, 2, 10, 8)),
    ((0, 0, W, H), (W, 15), None),
    ((7, 0, 11, H), (5, H), (1, 4, 3, 20)),
    ((2, 1, 30, 28), (30, 28), None),
    ((1, 2, 39, 26), (7, 5), None),
]


def source():
    y, x = np.mgrid[0:H, 0:W]
    chans = [(x * 37 + y * 91 + c * 53 + (x * y % 17) * 7) % 256 for c in range(3)]
    return Image.fromarray(np.stack(chans, axis=-1).astype(np.uint8), "RGB")


def main():
    img = source()
    lines = ["rx,ry,rw,rh,out_w,out_h,wx,wy,ww,wh,rgb"]
    for (rx, ry, rw, rh), (ow, oh), win in CASES:
        out = img.crop((rx, ry, rx + rw, ry + rh)).resize((ow, oh), Image.BILINEAR)
        win = win or (0, 0, ow, oh)
        wx, wy, ww, wh = win
        out = out.crop((wx, wy, wx + ww, wy + wh))
        values = " ".join(str(v) for v in np.asarray(out).reshape(-1))
        lines.append(f"{rx},{ry},{rw},{rh},{ow},{oh},{wx},{wy},{ww},{wh},{values}")
    path = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "pil_resize.csv"
    path.write_text("\n".join(lines) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
