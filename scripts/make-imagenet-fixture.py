#!/usr/bin/env python3
"""Writes the PyTorch fixtures of the ImageNet ResNet import test (needs PyTorch and
torchvision; the tests do not):

  tests/fixtures/imagenet-resnet18-w8.pth         bare state dict (torch.save of
                                                  model.state_dict(), as torchvision
                                                  publishes its weights) of a ResNet-18 of
                                                  base width 8, 10 classes
  tests/fixtures/imagenet-resnet18-w8.logits.csv  its eval-mode logits of a fixed input
  tests/fixtures/imagenet-resnet50-w4.pth         the same for a ResNet-50 of base width 4
  tests/fixtures/imagenet-resnet50-w4.logits.csv
  tests/fixtures/imagenet-keys.csv                model,key,shape of every entry of the state
                                                  dicts of torchvision's full-width
                                                  resnet18/34/50 (1000 classes); shape is the
                                                  dimensions joined by "x", empty for a scalar

The models are torchvision's own `torchvision.models.resnet.ResNet` with its `BasicBlock`
and `Bottleneck`, rebuilt at a reduced base width (8 or 4 instead of 64: stages of 8, 16,
32, 64 or 4, 8, 16, 32 planes) so that the committed files stay small (about 1 MB in all);
the module names, and so the state-dict keys, are torchvision's. BatchNorm running
statistics are made non-trivial by a few training-mode passes, and BatchNorm's affine
parameters are perturbed, so the test checks that lecal uses each of them where it should.

The fixed input is sin(0.37 * i) of the flat index i, shape (2, 3, 64, 64): the Rust test
builds the same numbers.

    python3 scripts/make-imagenet-fixture.py
"""
from pathlib import Path

import torch
from torch import nn
from torchvision.models import resnet18, resnet34, resnet50
from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet

OUT = Path(__file__).resolve().parent.parent / "tests" / "fixtures"


class NarrowResNet(ResNet):
    """torchvision's ResNet with every width scaled from 64 to `base`."""

    def __init__(self, block, layers, base, num_classes):
        super().__init__(block, layers, num_classes=num_classes)
        self.inplanes = base
        self.conv1 = nn.Conv2d(3, base, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = self._norm_layer(base)
        self.layer1 = self._make_layer(block, base, layers[0])
        self.layer2 = self._make_layer(block, base * 2, layers[1], stride=2)
        self.layer3 = self._make_layer(block, base * 4, layers[2], stride=2)
        self.layer4 = self._make_layer(block, base * 8, layers[3], stride=2)
        self.fc = nn.Linear(base * 8 * block.expansion, num_classes)
        # torchvision's initialisation, again for the rebuilt modules.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)


def fixed_input():
    n = 2 * 3 * 64 * 64
    return torch.sin(torch.arange(n, dtype=torch.float32) * 0.37).reshape(2, 3, 64, 64)


def write_csv(path, rows):
    with open(path, "w") as f:
        for row in rows:
            f.write(",".join(f"{v:.7e}" for v in row) + "\n")


def fixture(name, block, layers, base, full):
    torch.manual_seed(0)
    model = NarrowResNet(block, layers, base, num_classes=10)
    assert model.state_dict().keys() == full.state_dict().keys()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0.0, 0.1)
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(8, 3, 64, 64) * 2.0 + 0.5)
    model.eval()
    with torch.no_grad():
        logits = model(fixed_input())
    stem = f"imagenet-{name}-w{base}"
    torch.save(model.state_dict(), OUT / f"{stem}.pth")
    write_csv(OUT / f"{stem}.logits.csv", logits.tolist())


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    full = {"resnet18": resnet18(), "resnet34": resnet34(), "resnet50": resnet50()}
    with open(OUT / "imagenet-keys.csv", "w") as f:
        f.write("model,key,shape\n")
        for name, model in full.items():
            for key, t in model.state_dict().items():
                f.write(f"{name},{key},{'x'.join(str(d) for d in t.shape)}\n")
    fixture("resnet18", BasicBlock, [2, 2, 2, 2], 8, full["resnet18"])
    fixture("resnet50", Bottleneck, [3, 4, 6, 3], 4, full["resnet50"])
    print("wrote", sorted(p.name for p in OUT.iterdir() if p.name.startswith("imagenet-")))


if __name__ == "__main__":
    main()
