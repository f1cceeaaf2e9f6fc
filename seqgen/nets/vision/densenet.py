"""DenseNet-121 (Huang, Liu, van der Maaten & Weinberger 2017): dense blocks of BN-ReLU-1x1
(bottleneck, 4k channels) -> BN-ReLU-3x3 (growth rate k=32) layers, each fed the concatenation
of all earlier maps; transitions halve channels (compression 0.5) and size. 8.0M parameters at
224 px; at 32 px a 3x3 stem without the max pool."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from seqgen.nets.vision.common import check_size


class DenseLayer(nn.Module):
    def __init__(self, cin: int, growth: int, bn_size: int = 4):
        super().__init__()
        self.norm1, self.relu1 = nn.BatchNorm2d(cin), nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(cin, bn_size * growth, 1, bias=False)
        self.norm2, self.relu2 = nn.BatchNorm2d(bn_size * growth), nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(bn_size * growth, growth, 3, 1, 1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv2(self.relu2(self.norm2(self.conv1(self.relu1(self.norm1(x))))))


class DenseBlock(nn.Module):
    def __init__(self, n: int, cin: int, growth: int, bn_size: int = 4):
        super().__init__()
        self.layers = nn.ModuleList(DenseLayer(cin + i * growth, growth, bn_size) for i in range(n))

    def forward(self, x: Tensor) -> Tensor:
        feats = [x]
        for layer in self.layers:
            feats.append(layer(torch.cat(feats, 1)))
        return torch.cat(feats, 1)


class DenseNet(nn.Module):
    def __init__(self, num_classes: int = 1000, in_channels: int = 3, image_size: int = 224, growth_rate: int = 32,
                 block_config: tuple[int, ...] = (6, 12, 24, 16), num_init_features: int = 64, bn_size: int = 4,
                 compression: float = 0.5):
        super().__init__()
        check_size("DenseNet", image_size, 16)
        if image_size >= 100:
            stem = [nn.Conv2d(in_channels, num_init_features, 7, 2, 3, bias=False), nn.BatchNorm2d(num_init_features),
                    nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1)]
        else:
            stem = [nn.Conv2d(in_channels, num_init_features, 3, 1, 1, bias=False)]
        layers: list[nn.Module] = list(stem)
        c = num_init_features
        for i, n in enumerate(block_config):
            layers.append(DenseBlock(n, c, growth_rate, bn_size))
            c += n * growth_rate
            if i < len(block_config) - 1:
                out = int(c * compression)
                layers += [nn.BatchNorm2d(c), nn.ReLU(inplace=True), nn.Conv2d(c, out, 1, bias=False), nn.AvgPool2d(2, 2)]
                c = out
        layers += [nn.BatchNorm2d(c), nn.ReLU(inplace=True)]
        self.features = nn.Sequential(*layers)
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.classifier = nn.Linear(c, num_classes)
        self.head_names = ("classifier",)  # the layer transfer learning replaces

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.pool(self.features(x)))


def densenet121(**kw) -> DenseNet:
    return DenseNet(**kw)
