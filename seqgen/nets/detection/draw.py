"""Boxes drawn onto images (Pillow), for sample grids and ``scripts/detect.py``."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

COLOURS = [(230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180),
           (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212)]


def draw_boxes(image: Tensor, boxes: Tensor, labels: Tensor, scores: Tensor | None = None,
               classes: Sequence[str] | None = None, scale: int = 1, truth: Tensor | None = None) -> Tensor:
    """``image`` (C, H, W) in [0, 1] enlarged ``scale`` times, as RGB (3, H*scale, W*scale), with each
    box in its class's colour and ``<class> <score>`` above it; ``truth`` boxes in thin white."""
    from PIL import Image, ImageDraw

    x = image.detach().float().clamp(0, 1).cpu()
    x = x.expand(3, -1, -1) if x.size(0) == 1 else x[:3]
    arr = (x * 255).round().to(torch.uint8).permute(1, 2, 0).contiguous().numpy()
    im = Image.fromarray(arr, mode="RGB")
    if scale > 1:
        im = im.resize((im.width * scale, im.height * scale), Image.NEAREST)
    d = ImageDraw.Draw(im)
    for b in ([] if truth is None else (truth.detach().float().cpu() * scale).tolist()):
        d.rectangle(b, outline=(255, 255, 255), width=1)
    s = None if scores is None else scores.detach().cpu().tolist()
    for i, (b, lab) in enumerate(zip((boxes.detach().float().cpu() * scale).tolist(), labels.detach().cpu().tolist())):
        colour = COLOURS[lab % len(COLOURS)]
        d.rectangle(b, outline=colour, width=2)
        name = classes[lab] if classes is not None and lab < len(classes) else str(lab)
        d.text((b[0] + 2, max(0, b[1] - 11)), name if s is None else f"{name} {s[i]:.2f}", fill=colour)
    return torch.frombuffer(bytearray(im.tobytes()), dtype=torch.uint8).view(im.height, im.width, 3).permute(2, 0, 1).float() / 255
