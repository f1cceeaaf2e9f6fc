"""SqueezeNet 1.1 (Iandola et al. 2016): Fire modules (1x1 squeeze, then parallel 1x1 and 3x3
expand), no fully connected layers, 1.24M parameters at 224 px. At 32 px a 3x3/1 first layer."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from seqgen.nets.vision.common import check_size


class Fire(nn.Module):
    def __init__(self, cin: int, squeeze: int, e1: int, e3: int):
        super().__init__()
        self.squeeze = nn.Sequential(nn.Conv2d(cin, squeeze, 1), nn.ReLU(inplace=True))
        self.expand1 = nn.Sequential(nn.Conv2d(squeeze, e1, 1), nn.ReLU(inplace=True))
        self.expand3 = nn.Sequential(nn.Conv2d(squeeze, e3, 3, padding=1), nn.ReLU(inplace=True))

    def forward(self, x: Tensor) -> Tensor:
        s = self.squeeze(x)
        return torch.cat([self.expand1(s), self.expand3(s)], 1)


class SqueezeNet(nn.Module):
    def __init__(self, num_classes: int = 1000, in_channels: int = 3, image_size: int = 224, dropout: float = 0.5):
        super().__init__()
        check_size("SqueezeNet", image_size, 16)
        first = nn.Conv2d(in_channels, 64, 3, 2) if image_size >= 100 else nn.Conv2d(in_channels, 64, 3, 1, 1)
        pool = (lambda: nn.MaxPool2d(3, 2, ceil_mode=True)) if image_size >= 100 else (lambda: nn.MaxPool2d(2, 2))
        self.features = nn.Sequential(
            first, nn.ReLU(inplace=True), pool(),
            Fire(64, 16, 64, 64), Fire(128, 16, 64, 64), pool(),
            Fire(128, 32, 128, 128), Fire(256, 32, 128, 128), pool(),
            Fire(256, 48, 192, 192), Fire(384, 48, 192, 192), Fire(384, 64, 256, 256), Fire(512, 64, 256, 256),
        )
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Conv2d(512, num_classes, 1), nn.ReLU(inplace=True),
                                        nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head_names = ("classifier.1",)  # the 1x1 convolution to class maps: the layer transfer learning replaces

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x))
