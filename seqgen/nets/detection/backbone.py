"""A detection backbone from the CNN catalogue: the classifier's convolutional trunk without its
pooling and class layers, its modules under the classifier's own names (so a classifier run's
weights load into it by name: ``model.init_from``)."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from seqgen.errors import ConfigError


class Trunk(nn.Module):
    """The feature-map part of a catalogue classifier: ``features`` (LeNet, AlexNet, VGG, NiN,
    SqueezeNet, DenseNet) or ResNet's ``stem`` and ``layer1``..``layer4``. ``pad`` zero-pads the input
    first: nets of unpadded convolutions (LeNet) lose a border, and the padding gives it back so the
    map's cells tile the whole image."""

    def __init__(self, net: nn.Module, pad: int = 0):
        super().__init__()
        from seqgen.nets.vision import ResNet

        if isinstance(net, ResNet):
            self.parts = ("stem", "layer1", "layer2", "layer3", "layer4")
        elif isinstance(getattr(net, "features", None), nn.Module):
            self.parts = ("features",)
        else:
            raise ConfigError(f"{type(net).__name__} has no convolutional trunk a detector can use "
                              "(a features module, or ResNet's stages)")
        for p in self.parts:
            setattr(self, p, getattr(net, p))
        self.pad = pad

    def forward(self, x: Tensor) -> Tensor:
        if self.pad:
            x = F.pad(x, (self.pad,) * 4)
        for p in self.parts:
            x = getattr(self, p)(x)
        return x


@torch.no_grad()
def _map_side(trunk: nn.Module, in_channels: int, side: int) -> tuple[int, int]:
    was = trunk.training
    out = trunk.eval()(torch.zeros(1, in_channels, side, side))
    trunk.train(was)
    if out.dim() != 4:
        raise ConfigError(f"the backbone gives a {tuple(out.shape[1:])} output, not a feature map")
    return int(out.size(1)), int(out.size(-1))


def build_trunk(name: str, in_channels: int, image_size: int) -> tuple[Trunk, tuple[int, int, int], float]:
    """The trunk of catalogue net ``name``, its output shape (C, H, W) at ``image_size`` and its stride.
    The stride and the map's centring are measured (two input sizes); a trunk whose first cell's
    centre lies further in than half a stride is given the padding that brings the map over the
    whole image (cell i then centres on (i + 0.5) * stride)."""
    from seqgen.nets.vision import build_net

    trunk = Trunk(build_net(name, num_classes=10, in_channels=in_channels, image_size=image_size))
    channels, side = _map_side(trunk, in_channels, image_size)
    bigger = _map_side(trunk, in_channels, image_size + 64)[1]
    if bigger == side:
        raise ConfigError(f"backbone {name} pools to a fixed size: no stride to detect with")
    stride = 64 / (bigger - side)
    first_centre = (image_size - (side - 1) * stride) / 2
    pad = max(0, round(first_centre - stride / 2))
    if pad:
        trunk.pad = pad
        channels, side = _map_side(trunk, in_channels, image_size)
    if side < 2:
        raise ConfigError(f"backbone {name} gives a {side}x{side} map at {image_size} px: too small to detect on; "
                          "use larger images or another backbone")
    return trunk, (channels, side, side), image_size / side


def conv_block(cin: int, cout: int, k: int = 3, norm: bool = True) -> list[Any]:
    """Conv (k x k, same padding), GroupNorm, ReLU: the heads' layer."""
    layers: list[Any] = [nn.Conv2d(cin, cout, k, padding=k // 2, bias=not norm)]
    if norm:
        layers.append(nn.GroupNorm(min(32, cout // 4) or 1, cout))
    layers.append(nn.ReLU(inplace=True))
    return layers
