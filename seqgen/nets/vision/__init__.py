"""The CNN catalogue on plain torch (no torchvision), with one registry::

    from seqgen.nets.vision import build_net, NETS
    net = build_net("resnet18", num_classes=10, in_channels=3, image_size=32)

Every net adapts its stem to small inputs (28/32 px) and keeps the paper layout at 224 px.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from torch import nn

from seqgen.errors import ConfigError
from seqgen.nets.vision.alexnet import AlexNet, zfnet
from seqgen.nets.vision.common import as_int_size
from seqgen.nets.vision.densenet import DenseNet, densenet121
from seqgen.nets.vision.googlenet import GoogLeNet
from seqgen.nets.vision.lenet import LeNet5
from seqgen.nets.vision.nin import NiN
from seqgen.nets.vision.resnet import ResNet, resnet18, resnet34, resnet50
from seqgen.nets.vision.squeezenet import SqueezeNet
from seqgen.nets.vision.vgg import VGG

NETS: dict[str, Callable[..., nn.Module]] = {
    "lenet5": LeNet5,
    "lenet_modern": partial(LeNet5, modern=True),
    "alexnet": AlexNet,
    "zfnet": zfnet,
    **{f"vgg{d}": partial(VGG, d) for d in (11, 13, 16, 19)},
    **{f"vgg{d}_bn": partial(VGG, d, batch_norm=True) for d in (11, 13, 16, 19)},
    "nin": NiN,
    "googlenet": GoogLeNet,
    "resnet18": resnet18,
    "resnet34": resnet34,
    "resnet50": resnet50,
    "densenet121": densenet121,
    "squeezenet1_1": SqueezeNet,
}


def build_net(name: str, num_classes: int = 10, in_channels: int = 3, image_size: Any = 32, **kwargs: Any) -> nn.Module:
    """Build a catalogue net by name; unknown names list the catalogue."""
    if name not in NETS:
        raise ConfigError(f"unknown net {name!r}; available: {', '.join(NETS)}")
    return NETS[name](num_classes=num_classes, in_channels=in_channels, image_size=as_int_size(image_size), **kwargs)


def _accepted_keys(spec: Any) -> tuple[list[str], bool]:
    """``build_net``'s own keys plus those of the net ``spec["name"]`` picks (for seqgen.utils.check_keys)."""
    from seqgen.utils import parameters

    names, var_kw = parameters(NETS[spec["name"]]) if spec.get("name") in NETS else ([], True)
    return ["name", *names], var_kw


build_net.accepted_keys = _accepted_keys  # type: ignore[attr-defined]


__all__ = ["NETS", "AlexNet", "DenseNet", "GoogLeNet", "LeNet5", "NiN", "ResNet", "SqueezeNet", "VGG", "build_net"]
