"""Pieces shared by the CNN catalogue."""

from __future__ import annotations

from torch import nn

from seqgen.errors import ConfigError


def conv_bn_relu(cin: int, cout: int, k: int, stride: int = 1, padding: int | None = None, bn: bool = True) -> nn.Sequential:
    padding = k // 2 if padding is None else padding
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, k, stride, padding, bias=not bn)]
    if bn:
        layers.append(nn.BatchNorm2d(cout))
    layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


def check_size(name: str, image_size: int, minimum: int, note: str = "") -> None:
    if image_size < minimum:
        raise ConfigError(f"{name} needs images of at least {minimum}x{minimum} pixels, got {image_size}x{image_size}"
                          + (f" ({note})" if note else ""))


def as_int_size(image_size: int | list[int] | tuple[int, ...]) -> int:
    if isinstance(image_size, (list, tuple)):
        if len(set(image_size)) != 1:
            raise ConfigError(f"the CNN catalogue takes square images, got {tuple(image_size)}")
        return int(image_size[0])
    return int(image_size)
