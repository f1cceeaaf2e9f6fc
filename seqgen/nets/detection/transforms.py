"""Batched augmentations that move the boxes with the pixels (training only, the global RNG, which
``EpochSeed`` reseeds each epoch). Each takes and returns ``(images (N, C, H, W), targets)``."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from seqgen.nets.detection.boxes import box_area

Targets = list[dict[str, Tensor]]


def _check_p(p: float) -> None:
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"p must be a probability in [0, 1], got {p}")


class HorizontalFlip(nn.Module):
    """Mirror each image with probability ``p``; x1, x2 become W - x2, W - x1."""

    def __init__(self, p: float = 0.5):
        super().__init__()
        _check_p(p)
        self.p = p

    def forward(self, images: Tensor, targets: Targets) -> tuple[Tensor, Targets]:
        if not self.training:
            return images, targets
        flip = torch.rand(len(images)) < self.p
        w = images.size(-1)
        images = torch.where(flip.to(images.device).view(-1, 1, 1, 1), images.flip(-1), images)
        out = []
        for f, t in zip(flip.tolist(), targets):
            if f:
                b = t["boxes"]
                t = {**t, "boxes": torch.stack([w - b[:, 2], b[:, 1], w - b[:, 0], b[:, 3]], -1)}
            out.append(t)
        return images, out


class RandomZoomCrop(nn.Module):
    """Crop a random square of ``scale`` in [min_scale, 1] of the side (with probability ``p``) and
    resize it back to the full image: objects grow and shift. Boxes are mapped with the crop, clipped
    to it, and dropped when less than ``min_visible`` of their area stays inside."""

    def __init__(self, min_scale: float = 0.6, p: float = 0.5, min_visible: float = 0.6):
        super().__init__()
        if not 0 < min_scale <= 1:
            raise ValueError(f"min_scale must be in (0, 1], got {min_scale}")
        _check_p(p)
        self.min_scale, self.p, self.min_visible = min_scale, p, min_visible

    def forward(self, images: Tensor, targets: Targets) -> tuple[Tensor, Targets]:
        if not self.training:
            return images, targets
        n, _, h, w = images.shape
        apply = torch.rand(n) < self.p
        scale = torch.where(apply, self.min_scale + (1 - self.min_scale) * torch.rand(n), torch.ones(n))
        x0, y0 = torch.rand(n) * (1 - scale) * w, torch.rand(n) * (1 - scale) * h
        # one affine grid for the batch: output pixel u samples input x0 + u * scale
        theta = torch.zeros(n, 2, 3)
        theta[:, 0, 0], theta[:, 1, 1] = scale, scale
        theta[:, 0, 2] = (2 * x0 / w) + scale - 1
        theta[:, 1, 2] = (2 * y0 / h) + scale - 1
        grid = F.affine_grid(theta.to(images), list(images.shape), align_corners=False)
        images = F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        out = []
        for i, t in enumerate(targets):
            b = t["boxes"]
            if len(b) == 0 or not apply[i]:
                out.append(t)
                continue
            shift = torch.tensor([x0[i], y0[i], x0[i], y0[i]], device=b.device)
            mapped = (b - shift) / scale[i].item()
            clipped = torch.stack([mapped[:, 0].clamp(0, w), mapped[:, 1].clamp(0, h),
                                   mapped[:, 2].clamp(0, w), mapped[:, 3].clamp(0, h)], -1)
            keep = box_area(clipped) >= self.min_visible * box_area(mapped).clamp_min(1e-6)
            out.append({k: (clipped if k == "boxes" else v)[keep] for k, v in t.items()})
        return images, out


class DetectionAugment(nn.Module):
    """A list of the above, applied in order."""

    def __init__(self, steps: list[nn.Module]):
        super().__init__()
        self.steps = nn.ModuleList(steps)

    def __len__(self) -> int:
        return len(self.steps)

    def forward(self, images: Tensor, targets: Targets) -> tuple[Tensor, Targets]:
        for s in self.steps:
            images, targets = s(images, targets)
        return images, targets
