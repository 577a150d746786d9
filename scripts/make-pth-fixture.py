#!/usr/bin/env python3
"""Writes the PyTorch fixtures of the `.pth` import test (needs PyTorch; CI does not):

  tests/fixtures/resnet8-c10.pth        {"state_dict": ..., "epoch": 3}, keys with DataParallel's
                                        "module." prefix, as training scripts usually save
  tests/fixtures/resnet8-c10-bare.pth   the bare state dict
  tests/fixtures/resnet8-c10.logits.csv eval-mode logits of a fixed input, for comparison
  tests/fixtures/resnet8-c10.sgd.csv    the same after two SGD steps (lr 0.1, momentum 0.9,
                                        weight decay 5e-4, cross-entropy, labels 3 and 7) in
                                        training mode, from the saved weights

The model is a CIFAR ResNet-8 (10 classes) in the layout of the public PyTorch CIFAR ResNet
code: conv1/bn1, layer{1,2,3}.{i}.{conv1,bn1,conv2,bn2,shortcut.0,shortcut.1}, linear, with
1x1-convolution shortcuts. BatchNorm running statistics are made non-trivial by a few
training-mode passes, so the test checks that lecal uses them.

    python3 scripts/make-pth-fixture.py
"""
from pathlib import Path

import torch
import torch.nn.functional as F

from cifar_resnet import ResNet

OUT = Path(__file__).resolve().parent.parent / "tests" / "fixtures"


def fixed_input():
    # The same numbers the Rust test builds: sin of the flat index, shape (2, 3, 8, 8).
    return torch.sin(torch.arange(2 * 3 * 8 * 8, dtype=torch.float32) * 0.37).reshape(2, 3, 8, 8)


def main():
    torch.manual_seed(0)
    model = ResNet(8, 10)
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(16, 3, 8, 8) * 2.0 + 0.5)
    model.eval()
    with torch.no_grad():
        logits = model(fixed_input())
    OUT.mkdir(parents=True, exist_ok=True)
    sd = model.state_dict()
    torch.save({"state_dict": {f"module.{k}": v for k, v in sd.items()}, "epoch": 3},
               OUT / "resnet8-c10.pth")
    torch.save(sd, OUT / "resnet8-c10-bare.pth")
    with open(OUT / "resnet8-c10.logits.csv", "w") as f:
        for row in logits.tolist():
            f.write(",".join(f"{v:.7e}" for v in row) + "\n")
    # Two training steps from the saved state, as lecal's trainer takes them.
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    labels = torch.tensor([3, 7])
    model.train()
    for _ in range(2):
        opt.zero_grad()
        F.cross_entropy(model(fixed_input()), labels).backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        after = model(fixed_input())
    with open(OUT / "resnet8-c10.sgd.csv", "w") as f:
        for row in after.tolist():
            f.write(",".join(f"{v:.7e}" for v in row) + "\n")
    print("wrote", sorted(p.name for p in OUT.iterdir()))


if __name__ == "__main__":
    main()
