"""GoogLeNet / Inception v1 (Szegedy et al. 2015): Inception modules with 1x1 reductions before
the 3x3 and 5x5 convolutions and after the pooling branch; optional auxiliary classifiers on
inception 4a and 4d whose losses (weight 0.3) the Classifier adds during training.

Convolutions are conv-BN-ReLU (batch norm as in torchvision's implementation; the 2014 paper
predates it). ``branch3_kernel`` is the paper's 5 by default; torchvision uses 3 (its
6.62M-parameter model), which ``branch3_kernel=3`` reproduces exactly. At 32 px: a 3x3 stem
without the early poolings (the usual CIFAR adaptation).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from seqgen.nets.vision.common import check_size


def _conv(cin: int, cout: int, k: int, stride: int = 1, padding: int | None = None) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, stride, k // 2 if padding is None else padding, bias=False),
                         nn.BatchNorm2d(cout, eps=0.001), nn.ReLU(inplace=True))


class Inception(nn.Module):
    def __init__(self, cin: int, c1: int, c3r: int, c3: int, c5r: int, c5: int, pool_proj: int, k5: int = 5):
        super().__init__()
        self.branch1 = _conv(cin, c1, 1)
        self.branch2 = nn.Sequential(_conv(cin, c3r, 1), _conv(c3r, c3, 3))
        self.branch3 = nn.Sequential(_conv(cin, c5r, 1), _conv(c5r, c5, k5))
        self.branch4 = nn.Sequential(nn.MaxPool2d(3, 1, 1, ceil_mode=True), _conv(cin, pool_proj, 1))

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)], 1)


class AuxClassifier(nn.Module):
    def __init__(self, cin: int, num_classes: int, dropout: float = 0.7):
        super().__init__()
        self.conv = _conv(cin, 128, 1)
        self.fc1 = nn.Linear(128 * 4 * 4, 1024)
        self.fc2 = nn.Linear(1024, num_classes)
        self.dropout = dropout

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv(F.adaptive_avg_pool2d(x, 4)).flatten(1)
        x = F.dropout(F.relu(self.fc1(x), inplace=True), self.dropout, self.training)
        return self.fc2(x)


CFG = {  # in, 1x1, 3x3 reduce, 3x3, 5x5 reduce, 5x5, pool proj
    "3a": (192, 64, 96, 128, 16, 32, 32), "3b": (256, 128, 128, 192, 32, 96, 64),
    "4a": (480, 192, 96, 208, 16, 48, 64), "4b": (512, 160, 112, 224, 24, 64, 64), "4c": (512, 128, 128, 256, 24, 64, 64),
    "4d": (512, 112, 144, 288, 32, 64, 64), "4e": (528, 256, 160, 320, 32, 128, 128),
    "5a": (832, 256, 160, 320, 32, 128, 128), "5b": (832, 384, 192, 384, 48, 128, 128),
}


class GoogLeNetOutputs(NamedTuple):
    """What GoogLeNet returns in training with auxiliary classifiers (torchvision's field names; the
    Classifier adds ``aux_weight`` times each auxiliary loss)."""

    logits: Tensor
    aux_logits1: Tensor
    aux_logits2: Tensor

    @property
    def aux(self) -> tuple[Tensor, Tensor]:
        return self.aux_logits1, self.aux_logits2


class GoogLeNet(nn.Module):
    """``forward`` returns the main logits, or :class:`GoogLeNetOutputs` in training mode with
    ``aux_logits`` (the auxiliary losses get weight ``aux_weight``)."""

    def __init__(self, num_classes: int = 1000, in_channels: int = 3, image_size: int = 224, aux_logits: bool = False,
                 aux_weight: float = 0.3, dropout: float = 0.4, branch3_kernel: int = 5):
        super().__init__()
        check_size("GoogLeNet", image_size, 16)
        if image_size >= 100:
            self.stem = nn.Sequential(_conv(in_channels, 64, 7, 2, 3), nn.MaxPool2d(3, 2, ceil_mode=True),
                                      _conv(64, 64, 1), _conv(64, 192, 3), nn.MaxPool2d(3, 2, ceil_mode=True))
        else:
            self.stem = _conv(in_channels, 192, 3)
        self.blocks = nn.ModuleDict({name: Inception(*cfg, k5=branch3_kernel) for name, cfg in CFG.items()})
        self.pool3 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.pool4 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.aux_logits, self.aux_weight = aux_logits, aux_weight
        self.aux1 = AuxClassifier(512, num_classes) if aux_logits else None
        self.aux2 = AuxClassifier(528, num_classes) if aux_logits else None
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout), nn.Linear(1024, num_classes))
        # the layers transfer learning replaces: the classifier's and the auxiliary classifiers' outputs
        self.head_names = ("head.3", "aux1.fc2", "aux2.fc2") if aux_logits else ("head.3",)

    def forward(self, x: Tensor) -> Tensor | GoogLeNetOutputs:
        """The logits; in training mode with ``aux_logits``, :class:`GoogLeNetOutputs` (the logits and
        both auxiliary classifiers' logits), as torchvision's GoogLeNet returns them."""
        b = self.blocks
        x = self.stem(x)
        x = self.pool3(b["3b"](b["3a"](x)))
        x = b["4a"](x)
        aux = []
        if self.aux1 is not None and self.training:
            aux.append(self.aux1(x))
        x = b["4d"](b["4c"](b["4b"](x)))
        if self.aux2 is not None and self.training:
            aux.append(self.aux2(x))
        x = self.pool4(b["4e"](x))
        x = b["5b"](b["5a"](x))
        logits = self.head(x)
        return GoogLeNetOutputs(logits, *aux) if aux else logits
