"""VGG-11/13/16/19 (Simonyan & Zisserman 2015), with or without batch norm.

At 224 px: the paper's 3x3 stacks, 7x7 adaptive pooling and the 4096-4096 classifier
(VGG-16: 138.4M parameters). At 32 px (CIFAR; 28 px inputs are zero-padded to 32): the same convolution stacks, whose five
poolings leave 1x1x512, and a 512 -> classes head, as is usual for CIFAR VGGs.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from seqgen.errors import ConfigError
from seqgen.nets.vision.common import check_size

CONFIGS = {
    11: [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    13: [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    16: [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    19: [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"],
}


class VGG(nn.Module):
    def __init__(self, depth: int = 16, num_classes: int = 1000, in_channels: int = 3, image_size: int = 224,
                 batch_norm: bool = False, dropout: float = 0.5):
        super().__init__()
        if depth not in CONFIGS:
            raise ConfigError(f"VGG depth must be one of {sorted(CONFIGS)}, got {depth}")
        check_size(f"VGG-{depth}", image_size, 28, "five 2x2 poolings; 28-31 px inputs are zero-padded to 32")
        self.pad = max(0, 32 - image_size)
        layers: list[nn.Module] = []
        c = in_channels
        for v in CONFIGS[depth]:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(c, v, 3, padding=1)] + ([nn.BatchNorm2d(v)] if batch_norm else []) + [nn.ReLU(inplace=True)]
                c = v
        self.features = nn.Sequential(*layers)
        if image_size >= 100:
            self.avgpool = nn.AdaptiveAvgPool2d(7)
            self.classifier = nn.Sequential(
                nn.Flatten(), nn.Linear(512 * 7 * 7, 4096), nn.ReLU(inplace=True), nn.Dropout(dropout),
                nn.Linear(4096, 4096), nn.ReLU(inplace=True), nn.Dropout(dropout), nn.Linear(4096, num_classes),
            )
        else:
            self.avgpool = nn.AdaptiveAvgPool2d(1)
            self.classifier = nn.Sequential(nn.Flatten(), nn.Dropout(dropout), nn.Linear(512, num_classes))
        self.head_names = (f"classifier.{len(self.classifier) - 1}",)  # the layer transfer learning replaces

    def forward(self, x: Tensor) -> Tensor:
        if self.pad:
            x = F.pad(x, (self.pad // 2, self.pad - self.pad // 2, self.pad // 2, self.pad - self.pad // 2))
        return self.classifier(self.avgpool(self.features(x)))
