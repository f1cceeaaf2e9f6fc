"""Network in Network (Lin, Chen & Yan 2014): mlpconv blocks (a spatial convolution followed by
two 1x1 convolutions) and global average pooling instead of fully connected layers.
CIFAR layout (192-160-96 / 192-192-192 / 192-192-classes, dropout between blocks) at 32 px;
the ImageNet layout (96-256-384-1024 with 11x11/4 first layer) at 224 px."""

from __future__ import annotations

from torch import Tensor, nn

from seqgen.nets.vision.common import check_size


def mlpconv(cin: int, widths: tuple[int, int, int], k: int, stride: int = 1, padding: int = 0,
            last: bool = False) -> nn.Sequential:
    """``last``: the final block's class maps are logits, so they get no ReLU."""
    a, b, c = widths
    layers = [nn.Conv2d(cin, a, k, stride, padding), nn.ReLU(inplace=True),
              nn.Conv2d(a, b, 1), nn.ReLU(inplace=True), nn.Conv2d(b, c, 1)]
    return nn.Sequential(*layers, *([] if last else [nn.ReLU(inplace=True)]))


class NiN(nn.Module):
    def __init__(self, num_classes: int = 10, in_channels: int = 3, image_size: int = 32, dropout: float = 0.5):
        super().__init__()
        check_size("NiN", image_size, 28)
        if image_size < 100:
            self.features = nn.Sequential(
                mlpconv(in_channels, (192, 160, 96), 5, padding=2), nn.MaxPool2d(3, 2, 1), nn.Dropout(dropout),
                mlpconv(96, (192, 192, 192), 5, padding=2), nn.AvgPool2d(3, 2, 1), nn.Dropout(dropout),
                mlpconv(192, (192, 192, num_classes), 3, padding=1, last=True),
            )
        else:
            self.features = nn.Sequential(
                mlpconv(in_channels, (96, 96, 96), 11, stride=4), nn.MaxPool2d(3, 2),
                mlpconv(96, (256, 256, 256), 5, padding=2), nn.MaxPool2d(3, 2),
                mlpconv(256, (384, 384, 384), 3, padding=1), nn.MaxPool2d(3, 2), nn.Dropout(dropout),
                mlpconv(384, (1024, 1024, num_classes), 3, padding=1, last=True),
            )
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        last = len(self.features) - 1  # the final mlpconv's last convolution makes the class maps: the head
        conv = max(i for i, m in enumerate(self.features[last]) if isinstance(m, nn.Conv2d))
        self.head_names = (f"features.{last}.{conv}",)

    def forward(self, x: Tensor) -> Tensor:
        return self.pool(self.features(x))
