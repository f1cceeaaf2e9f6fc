"""Batched data augmentation as tensor ops (run on the training device, GPU when there is one).

Each op takes a batch ``(B, C, H, W)`` and returns one of the same shape and dtype; it is active
only in training mode (``module.train()``), so validation and test see the images unchanged.
Randomness comes from the global torch RNG (seeded per epoch by seqgen's EpochSeed).
Configure as a list in YAML::

    model:
      augment:
        - {_target_: seqgen.nets.augment.RandomAffine, degrees: 10, translate: 0.1, scale: [0.9, 1.1]}
        - {_target_: seqgen.nets.augment.Cutout, size: 8}
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from seqgen.errors import ConfigError


class _Aug(nn.Module):
    def __init__(self, p: float = 1.0):
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ConfigError(f"augmentation probability p must be in [0, 1], got {p}")
        self.p = p

    def _mask(self, x: Tensor) -> Tensor:
        return (torch.rand(x.size(0), device=x.device) < self.p).view(-1, *([1] * (x.dim() - 1)))

    def forward(self, x: Tensor) -> Tensor:
        if not self.training:
            return x
        if x.dim() != 4:
            raise ConfigError(f"image augmentations expect (B, C, H, W) batches, got shape {tuple(x.shape)}")
        out = self.apply(x)
        return torch.where(self._mask(x), out, x) if self.p < 1.0 else out

    def apply(self, x: Tensor) -> Tensor:
        raise NotImplementedError


class HorizontalFlip(_Aug):
    def __init__(self, p: float = 0.5):
        super().__init__(p)

    def apply(self, x: Tensor) -> Tensor:
        return x.flip(-1)


class RandomCrop(_Aug):
    """Pad by ``padding`` (zeros or reflection) and crop back at a random offset per image."""

    def __init__(self, padding: int = 4, mode: str = "constant", p: float = 1.0):
        super().__init__(p)
        if padding < 0:
            raise ConfigError(f"padding must be >= 0, got {padding}")
        self.padding, self.mode = padding, mode

    def apply(self, x: Tensor) -> Tensor:
        pad = self.padding
        if pad == 0:
            return x
        B, C, H, W = x.shape
        padded = F.pad(x, (pad, pad, pad, pad), mode=self.mode)
        dy = torch.randint(0, 2 * pad + 1, (B,), device=x.device)
        dx = torch.randint(0, 2 * pad + 1, (B,), device=x.device)
        rows = (dy.view(B, 1) + torch.arange(H, device=x.device)).view(B, 1, H, 1).expand(B, C, H, W + 2 * pad)
        cropped = padded.gather(2, rows)
        cols = (dx.view(B, 1) + torch.arange(W, device=x.device)).view(B, 1, 1, W).expand(B, C, H, W)
        return cropped.gather(3, cols)


class RandomAffine(_Aug):
    """Rotation (``degrees``), shift (``translate``, a fraction of the size) and zoom (``scale``
    range) in one bilinear resampling (``grid_sample``), zeros outside."""

    def __init__(self, degrees: float = 0.0, translate: float = 0.0, scale: Sequence[float] = (1.0, 1.0), p: float = 1.0):
        super().__init__(p)
        if degrees < 0 or not 0.0 <= translate < 1.0 or len(scale) != 2 or min(scale) <= 0:
            raise ConfigError(f"RandomAffine: degrees >= 0, 0 <= translate < 1, scale=[lo, hi] > 0; got {degrees}, {translate}, {scale}")
        self.degrees, self.translate, self.scale = degrees, translate, tuple(scale)

    def apply(self, x: Tensor) -> Tensor:
        B = x.size(0)
        dev = x.device
        angle = (torch.rand(B, device=dev) * 2 - 1) * math.radians(self.degrees)
        s = torch.empty(B, device=dev).uniform_(*self.scale)
        t = (torch.rand(B, 2, device=dev) * 2 - 1) * 2 * self.translate  # grid coords span [-1, 1]
        cos, sin = torch.cos(angle) / s, torch.sin(angle) / s
        theta = torch.stack([torch.stack([cos, -sin, t[:, 0]], -1), torch.stack([sin, cos, t[:, 1]], -1)], 1)
        grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


class ColorJitter(_Aug):
    """Random brightness (additive) and contrast (scale about each image's mean)."""

    def __init__(self, brightness: float = 0.0, contrast: float = 0.0, p: float = 1.0):
        super().__init__(p)
        self.brightness, self.contrast = brightness, contrast

    def apply(self, x: Tensor) -> Tensor:
        B = x.size(0)
        shape = (B, 1, 1, 1)
        if self.contrast:
            c = torch.empty(shape, device=x.device).uniform_(1 - self.contrast, 1 + self.contrast)
            mean = x.mean(dim=(1, 2, 3), keepdim=True)
            x = (x - mean) * c + mean
        if self.brightness:
            x = x + torch.empty(shape, device=x.device).uniform_(-self.brightness, self.brightness)
        return x


class GaussianNoise(_Aug):
    def __init__(self, std: float = 0.1, p: float = 1.0):
        super().__init__(p)
        if std < 0:
            raise ConfigError(f"noise std must be >= 0, got {std}")
        self.std = std

    def apply(self, x: Tensor) -> Tensor:
        return x + torch.randn_like(x) * self.std


class Cutout(_Aug):
    """Zero a random ``size`` x ``size`` square per image (DeVries & Taylor 2017)."""

    def __init__(self, size: int = 8, p: float = 1.0):
        super().__init__(p)
        if size <= 0:
            raise ConfigError(f"cutout size must be positive, got {size}")
        self.size = size

    def apply(self, x: Tensor) -> Tensor:
        B, _, H, W = x.shape
        cy = torch.randint(0, H, (B, 1, 1), device=x.device)
        cx = torch.randint(0, W, (B, 1, 1), device=x.device)
        ys = torch.arange(H, device=x.device).view(1, H, 1)
        xs = torch.arange(W, device=x.device).view(1, 1, W)
        half = self.size // 2
        hole = ((ys - cy).abs() <= half) & ((xs - cx).abs() <= half)
        return x.masked_fill(hole.unsqueeze(1), 0.0)


def build_augment(specs: Sequence[Any] | None) -> nn.Module:
    """An ``nn.Sequential`` of augmentations from ``[{_target_: ..., ...}, ...]`` (or an empty one)."""
    from seqgen.utils import build

    return nn.Sequential(*[build(s) for s in (specs or [])])
