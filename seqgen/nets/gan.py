"""Generators and discriminators: MLP (Goodfellow et al. 2014) and DCGAN (Radford et al. 2016).

DCGAN's rules, scaled to small images: strided (transposed) convolutions instead of pooling,
batch norm in both nets (not on the generator's output nor the discriminator's input), ReLU in
the generator with a tanh output, LeakyReLU(0.2) in the discriminator, weights from N(0, 0.02).
Images are in [-1, 1]. The generator starts at a ``base x base`` map (``base`` in 3..7) doubled
up to the image size: 8, 16, 32, 64 (base 4), 28 (base 7), 12, 24 (base 6), ...

Conditional variants (``num_classes > 0``): the generator gets a learned label embedding
concatenated to the noise; the discriminator gets the one-hot label concatenated to its input
(as constant feature maps for convolutions). WGAN-GP critics must not use batch norm (the
gradient penalty is per example): ``norm="layer"`` or ``"none"``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from seqgen.errors import ConfigError
from seqgen.utils import image_hw

NORMS = ("batch", "layer", "none")


def dcgan_plan(image_size: int | Sequence[int]) -> tuple[int, int]:
    """(base, number of doublings) for a square image size; a clear error for sizes it cannot make."""
    h, w = image_hw(image_size)
    if h != w:
        raise ConfigError(f"DCGAN nets need square images, got {h}x{w}")
    image_size = h
    s, n = image_size, 0
    while s > 7 and s % 2 == 0:
        s, n = s // 2, n + 1
    if n == 0 or s < 3 or s > 7:
        raise ConfigError(f"DCGAN nets cannot make {image_size}x{image_size} images: the size must be a base of 3..7 "
                          "doubled at least once, e.g. 8, 12, 14, 16, 24, 28, 32, 48, 56, 64")
    return s, n


def dcgan_init(module: nn.Module) -> None:
    """N(0, 0.02) for conv and linear weights, N(1, 0.02) for norm scales, zero biases."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d, nn.GroupNorm)):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


def _norm2d(kind: str, channels: int) -> nn.Module:
    if kind not in NORMS:
        raise ConfigError(f"unknown norm {kind!r}; available: {', '.join(NORMS)}")
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "layer":  # layer norm over (C, H, W), per example
        return nn.GroupNorm(1, channels)
    return nn.Identity()


class _Conditioned(nn.Module):
    def __init__(self, latent_dim: int, num_classes: int, embed_dim: int | None = None):
        super().__init__()
        if not isinstance(latent_dim, int) or latent_dim <= 0:
            raise ConfigError(f"latent_dim must be a positive integer, got {latent_dim!r}")
        self.latent_dim, self.num_classes = latent_dim, num_classes
        self.embed = nn.Embedding(num_classes, embed_dim or num_classes) if num_classes else None
        self.in_dim = latent_dim + (embed_dim or num_classes if num_classes else 0)

    def _input(self, z: Tensor, y: Tensor | None) -> Tensor:
        if self.embed is None:
            return z
        if y is None:
            raise ValueError("a conditional generator needs labels y")
        return torch.cat([z, self.embed(y)], -1)


class MLPGenerator(_Conditioned):
    """``z (+ label embedding) -> hidden (LeakyReLU 0.2) ... -> C*H*W (tanh)``."""

    def __init__(self, latent_dim: int, out_channels: int, image_size: int | Sequence[int],
                 hidden_sizes: Sequence[int] = (256, 512), num_classes: int = 0, batch_norm: bool = True):
        super().__init__(latent_dim, num_classes)
        h, w = image_hw(image_size)
        self.shape = (out_channels, h, w)
        layers: list[nn.Module] = []
        width = self.in_dim
        for hs in hidden_sizes:
            layers += [nn.Linear(width, hs)] + ([nn.BatchNorm1d(hs)] if batch_norm else []) + [nn.LeakyReLU(0.2)]
            width = hs
        layers += [nn.Linear(width, out_channels * h * w), nn.Tanh()]
        self.net = nn.Sequential(*layers)

    def forward(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        return self.net(self._input(z, y)).view(z.size(0), *self.shape)


class MLPDiscriminator(nn.Module):
    """``x (+ one-hot label) -> hidden (LeakyReLU 0.2, dropout) ... -> 1 logit``."""

    def __init__(self, in_channels: int, image_size: int | Sequence[int], hidden_sizes: Sequence[int] = (512, 256),
                 num_classes: int = 0, dropout: float = 0.3):
        super().__init__()
        h, w = image_hw(image_size)
        self.num_classes = num_classes
        layers: list[nn.Module] = []
        width = in_channels * h * w + num_classes
        for hs in hidden_sizes:
            layers += [nn.Linear(width, hs), nn.LeakyReLU(0.2)] + ([nn.Dropout(dropout)] if dropout else [])
            width = hs
        layers.append(nn.Linear(width, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        x = x.flatten(1)
        if self.num_classes:
            x = torch.cat([x, F.one_hot(y, self.num_classes).to(x.dtype)], -1)
        return self.net(x).view(-1)


class DCGANGenerator(_Conditioned):
    """``z -> Linear -> (ch*2^(n-1), base, base) -> [ConvT4x4/2 -> BN -> ReLU] ... -> ConvT4x4/2 -> tanh``."""

    def __init__(self, latent_dim: int, out_channels: int, image_size: int | Sequence[int], base_channels: int = 64,
                 num_classes: int = 0):
        super().__init__(latent_dim, num_classes)
        base, n = dcgan_plan(image_size)
        widths = [base_channels * 2 ** (n - 1 - i) for i in range(n)]  # e.g. 256, 128, 64
        self.start = (widths[0], base, base)
        self.project = nn.Sequential(nn.Linear(self.in_dim, widths[0] * base * base, bias=False),
                                     nn.BatchNorm1d(widths[0] * base * base), nn.ReLU(True))
        layers: list[nn.Module] = []
        for c_in, c_out in zip(widths, widths[1:], strict=False):
            layers += [nn.ConvTranspose2d(c_in, c_out, 4, 2, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(True)]
        layers += [nn.ConvTranspose2d(widths[-1], out_channels, 4, 2, 1), nn.Tanh()]
        self.net = nn.Sequential(*layers)
        dcgan_init(self)

    def forward(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        return self.net(self.project(self._input(z, y)).view(z.size(0), *self.start))


class DCGANDiscriminator(nn.Module):
    """``x (+ label maps) -> [Conv4x4/2 -> norm -> LeakyReLU 0.2] ... -> Linear -> 1 logit``
    (no norm on the first layer)."""

    def __init__(self, in_channels: int, image_size: int | Sequence[int], base_channels: int = 64,
                 num_classes: int = 0, norm: str = "batch"):
        super().__init__()
        base, n = dcgan_plan(image_size)
        self.num_classes = num_classes
        layers: list[nn.Module] = []
        c_in = in_channels + num_classes
        for i in range(n):
            c_out = base_channels * 2 ** i
            layers += [nn.Conv2d(c_in, c_out, 4, 2, 1, bias=i == 0 or norm == "none")]
            if i > 0:
                layers.append(_norm2d(norm, c_out))
            layers.append(nn.LeakyReLU(0.2, True))
            c_in = c_out
        layers += [nn.Flatten(), nn.Linear(c_in * base * base, 1)]
        self.net = nn.Sequential(*layers)
        dcgan_init(self)

    def forward(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        if self.num_classes:
            maps = F.one_hot(y, self.num_classes).to(x.dtype)[:, :, None, None].expand(-1, -1, *x.shape[2:])
            x = torch.cat([x, maps], 1)
        return self.net(x).view(-1)
