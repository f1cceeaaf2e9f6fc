"""LeNet-5 (LeCun, Bottou, Bengio & Haffner 1998) and a modern ReLU/max-pool variant.

1998 layout on 32x32 input: C1 6@5x5 -> S2 (2x2 average) -> C3 16@5x5 -> S4 -> C5 120@5x5 ->
F6 84 -> 10, tanh squashing. C3 is fully connected to S2 here (the paper's sparse connection
table saves 900 weights) and the output is linear (the paper used RBF units): 61,706
parameters at 32 px. 28x28 inputs (MNIST) are zero-padded by 2, as LeCun padded them to 32.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from seqgen.nets.vision.common import check_size


class LeNet5(nn.Module):
    def __init__(self, num_classes: int = 10, in_channels: int = 1, image_size: int = 32, modern: bool = False):
        super().__init__()
        check_size("LeNet-5", image_size, 8, "8x8 digits are upsampled to 32x32")
        self.pad = max(0, (32 - image_size) // 2) if image_size in (28, 30) else 0
        self.resize = image_size < 28 or image_size not in (28, 30, 32)
        act = nn.ReLU if modern else nn.Tanh
        pool = (lambda: nn.MaxPool2d(2)) if modern else (lambda: nn.AvgPool2d(2))
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 6, 5), act(), pool(),      # C1, S2
            nn.Conv2d(6, 16, 5), act(), pool(),               # C3, S4
            nn.Conv2d(16, 120, 5), act(),                     # C5
        )
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(120, 84), act(), nn.Linear(84, num_classes))  # F6, output
        self.head_names = ("classifier.3",)  # the layer transfer learning replaces

    def forward(self, x: Tensor) -> Tensor:
        if self.resize:
            x = F.interpolate(x, size=(32, 32), mode="bilinear", align_corners=False)
        elif self.pad:
            x = F.pad(x, (self.pad,) * 4)
        return self.classifier(self.features(x))
