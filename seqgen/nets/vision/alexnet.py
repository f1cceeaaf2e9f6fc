"""AlexNet (Krizhevsky, Sutskever & Hinton 2012) and ZFNet (Zeiler & Fergus 2014).

AlexNet at 224 px is the single-GPU layout of torchvision (64-192-384-256-256 channels,
overlapping 3x3/2 max pooling, dropout 0.5 in the classifier, 61.1M parameters), with the
paper's local response normalisation optional (``lrn=True``). ZFNet: 7x7/2 first layer and
5x5/2 second layer (96-256-384-384-256). For 32 px inputs both use 3x3 convolutions, stride 1,
three 2x2 poolings and a 4096-4096 head on a 2x2 map (CIFAR-sized variants).
"""

from __future__ import annotations

from torch import Tensor, nn

from seqgen.nets.vision.common import check_size


def _lrn() -> nn.Module:
    return nn.LocalResponseNorm(size=5, alpha=1e-4, beta=0.75, k=2.0)


class AlexNet(nn.Module):
    def __init__(self, num_classes: int = 1000, in_channels: int = 3, image_size: int = 224, dropout: float = 0.5,
                 lrn: bool = False, zfnet: bool = False):
        super().__init__()
        name = "ZFNet" if zfnet else "AlexNet"
        check_size(name, image_size, 28)
        small = image_size < 100
        norm = _lrn if lrn else nn.Identity
        c = (96, 256, 384, 384, 256) if zfnet else (64, 192, 384, 256, 256)
        if small:
            self.features = nn.Sequential(
                nn.Conv2d(in_channels, c[0], 3, 1, 1), nn.ReLU(inplace=True), norm(), nn.MaxPool2d(2),
                nn.Conv2d(c[0], c[1], 3, 1, 1), nn.ReLU(inplace=True), norm(), nn.MaxPool2d(2),
                nn.Conv2d(c[1], c[2], 3, 1, 1), nn.ReLU(inplace=True),
                nn.Conv2d(c[2], c[3], 3, 1, 1), nn.ReLU(inplace=True),
                nn.Conv2d(c[3], c[4], 3, 1, 1), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            )
            pooled = 2
        elif zfnet:
            self.features = nn.Sequential(
                nn.Conv2d(in_channels, c[0], 7, 2, 1), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1), norm(),
                nn.Conv2d(c[0], c[1], 5, 2, 0), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1), norm(),
                nn.Conv2d(c[1], c[2], 3, 1, 1), nn.ReLU(inplace=True),
                nn.Conv2d(c[2], c[3], 3, 1, 1), nn.ReLU(inplace=True),
                nn.Conv2d(c[3], c[4], 3, 1, 1), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2),
            )
            pooled = 6
        else:
            self.features = nn.Sequential(
                nn.Conv2d(in_channels, c[0], 11, 4, 2), nn.ReLU(inplace=True), norm(), nn.MaxPool2d(3, 2),
                nn.Conv2d(c[0], c[1], 5, 1, 2), nn.ReLU(inplace=True), norm(), nn.MaxPool2d(3, 2),
                nn.Conv2d(c[1], c[2], 3, 1, 1), nn.ReLU(inplace=True),
                nn.Conv2d(c[2], c[3], 3, 1, 1), nn.ReLU(inplace=True),
                nn.Conv2d(c[3], c[4], 3, 1, 1), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2),
            )
            pooled = 6
        self.avgpool = nn.AdaptiveAvgPool2d(pooled)
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Dropout(dropout), nn.Linear(c[4] * pooled * pooled, 4096), nn.ReLU(inplace=True),
            nn.Dropout(dropout), nn.Linear(4096, 4096), nn.ReLU(inplace=True), nn.Linear(4096, num_classes),
        )
        self.head_names = (f"classifier.{len(self.classifier) - 1}",)  # the layer transfer learning replaces

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.avgpool(self.features(x)))


def zfnet(num_classes: int = 1000, in_channels: int = 3, image_size: int = 224, **kw) -> AlexNet:
    return AlexNet(num_classes, in_channels, image_size, zfnet=True, **kw)
