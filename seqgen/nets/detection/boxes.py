"""Box operations in plain torch (boxes are ``(x1, y1, x2, y2)`` rows unless a name says otherwise;
NMS's sequential scan runs on numpy rows), with torchvision.ops' semantics: IoU, generalised IoU,
NMS and class-aware (batched) NMS, format conversion, the Faster R-CNN box encoding, and grid/anchor
generation.

NMS keeps boxes in decreasing score order; among equal scores the lower index comes first (a
stable sort), which is the order torchvision's CPU kernel gives for ties.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor


def box_area(boxes: Tensor) -> Tensor:
    return (boxes[..., 2] - boxes[..., 0]).clamp_min(0) * (boxes[..., 3] - boxes[..., 1]).clamp_min(0)


def _inter_union(a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
    lt = torch.maximum(a[:, None, :2], b[None, :, :2])
    rb = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = (rb - lt).clamp_min(0)
    inter = wh[..., 0] * wh[..., 1]
    return inter, box_area(a)[:, None] + box_area(b)[None, :] - inter


def box_iou(a: Tensor, b: Tensor) -> Tensor:
    """(N, M) intersection over union of every pair; 0 where both boxes are empty."""
    inter, union = _inter_union(a, b)
    return torch.where(union > 0, inter / union.clamp_min(torch.finfo(inter.dtype).tiny), torch.zeros_like(inter))


def generalized_box_iou(a: Tensor, b: Tensor) -> Tensor:
    """(N, M) GIoU (Rezatofighi et al. 2019): IoU - (hull - union) / hull, in [-1, 1]."""
    inter, union = _inter_union(a, b)
    iou = inter / union.clamp_min(1e-12)
    lt = torch.minimum(a[:, None, :2], b[None, :, :2])
    rb = torch.maximum(a[:, None, 2:], b[None, :, 2:])
    wh = (rb - lt).clamp_min(0)
    hull = wh[..., 0] * wh[..., 1]
    return iou - (hull - union) / hull.clamp_min(1e-12)


def _paired(a: Tensor, b: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Intersection, union and enclosing-box area of broadcast pairs of boxes (..., 4)."""
    inter = (torch.minimum(a[..., 2:], b[..., 2:]) - torch.maximum(a[..., :2], b[..., :2])).clamp_min(0).prod(-1)
    union = box_area(a) + box_area(b) - inter
    hull = (torch.maximum(a[..., 2:], b[..., 2:]) - torch.minimum(a[..., :2], b[..., :2])).clamp_min(0).prod(-1)
    return inter, union, hull


def paired_iou(a: Tensor, b: Tensor) -> Tensor:
    """IoU of box ``a[...]`` with box ``b[...]`` (shapes broadcast), for losses and target assignment."""
    inter, union, _ = _paired(a, b)
    return inter / union.clamp_min(1e-12)


def paired_giou(a: Tensor, b: Tensor) -> Tensor:
    """GIoU of box ``a[...]`` with box ``b[...]`` (shapes broadcast), for losses."""
    inter, union, hull = _paired(a, b)
    return inter / union.clamp_min(1e-12) - (hull - union) / hull.clamp_min(1e-12)


def cxcywh_to_xyxy(b: Tensor) -> Tensor:
    cx, cy, w, h = b.unbind(-1)
    return torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], -1)


def xyxy_to_cxcywh(b: Tensor) -> Tensor:
    x1, y1, x2, y2 = b.unbind(-1)
    return torch.stack([(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1], -1)


def xywh_to_xyxy(b: Tensor) -> Tensor:
    x, y, w, h = b.unbind(-1)
    return torch.stack([x, y, x + w, y + h], -1)


def nms(boxes: Tensor, scores: Tensor, iou_threshold: float) -> Tensor:
    """Indices of the boxes kept by greedy non-maximum suppression, by decreasing score: a box is
    dropped when its IoU with a kept, higher-scoring box exceeds ``iou_threshold``."""
    if boxes.numel() == 0:
        return torch.empty(0, dtype=torch.long, device=boxes.device)
    import numpy as np

    order = torch.sort(scores, descending=True, stable=True).indices
    sorted_boxes = boxes[order]
    # the IoU matrix is computed once, vectorised; the greedy scan is sequential, and runs on numpy
    # arrays (a torch op per box cost 5-10 us, most of a detector's evaluation on these CPUs)
    over = (box_iou(sorted_boxes, sorted_boxes) > iou_threshold).cpu().numpy()
    suppressed = np.zeros(len(over), dtype=bool)
    keep = []
    for i in range(len(over)):
        if not suppressed[i]:
            keep.append(i)
            suppressed |= over[i]
    return order[torch.tensor(keep, dtype=torch.long).to(order.device)]


def batched_nms(boxes: Tensor, scores: Tensor, idxs: Tensor, iou_threshold: float) -> Tensor:
    """NMS within each category of ``idxs`` (boxes of different classes never suppress each other),
    by torchvision's coordinate trick: each class is shifted beyond every other's extent."""
    if boxes.numel() == 0:
        return torch.empty(0, dtype=torch.long, device=boxes.device)
    offsets = idxs.to(boxes) * (boxes.max() - boxes.min() + 1)
    return nms(boxes + offsets[:, None], scores, iou_threshold)


def encode_boxes(gt: Tensor, anchors: Tensor, weights: Sequence[float] = (1.0, 1.0, 1.0, 1.0)) -> Tensor:
    """Faster R-CNN regression targets of ``gt`` relative to ``anchors`` (both xyxy, paired rows):
    (wx (gx - ax) / aw, wy (gy - ay) / ah, ww log(gw / aw), wh log(gh / ah))."""
    g, a = xyxy_to_cxcywh(gt), xyxy_to_cxcywh(anchors)
    wx, wy, ww, wh = weights
    return torch.stack([wx * (g[:, 0] - a[:, 0]) / a[:, 2], wy * (g[:, 1] - a[:, 1]) / a[:, 3],
                        ww * torch.log(g[:, 2] / a[:, 2]), wh * torch.log(g[:, 3] / a[:, 3])], -1)


def decode_boxes(deltas: Tensor, anchors: Tensor, weights: Sequence[float] = (1.0, 1.0, 1.0, 1.0),
                 clamp: float = 4.135) -> Tensor:
    """The inverse of :func:`encode_boxes`; log-sizes clamped at ``clamp`` (log(1000/16)), as torchvision."""
    a = xyxy_to_cxcywh(anchors)
    wx, wy, ww, wh = weights
    cx = deltas[:, 0] / wx * a[:, 2] + a[:, 0]
    cy = deltas[:, 1] / wy * a[:, 3] + a[:, 1]
    w = torch.exp((deltas[:, 2] / ww).clamp(max=clamp)) * a[:, 2]
    h = torch.exp((deltas[:, 3] / wh).clamp(max=clamp)) * a[:, 3]
    return cxcywh_to_xyxy(torch.stack([cx, cy, w, h], -1))


def grid_centers(height: int, width: int, stride: float, device: torch.device | None = None) -> Tensor:
    """(H * W, 2) pixel centres (x, y) of a feature map's cells, row-major: cell (i, j) is
    ((j + 0.5) * stride, (i + 0.5) * stride)."""
    ys = (torch.arange(height, device=device, dtype=torch.float32) + 0.5) * stride
    xs = (torch.arange(width, device=device, dtype=torch.float32) + 0.5) * stride
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([gx.reshape(-1), gy.reshape(-1)], -1)


def anchor_grid(height: int, width: int, stride: float, sizes: Sequence[float], ratios: Sequence[float] = (1.0,),
                device: torch.device | None = None) -> Tensor:
    """(H * W * A, 4) anchors, A = len(sizes) * len(ratios) per cell (cell-major): each of area size^2
    and height/width ``ratio``, centred on its cell."""
    base = []
    for s in sizes:
        for r in ratios:
            w, h = s / r ** 0.5, s * r ** 0.5
            base.append([-w / 2, -h / 2, w / 2, h / 2])
    base_t = torch.tensor(base, device=device)
    centers = grid_centers(height, width, stride, device).repeat(1, 2)
    return (centers[:, None, :] + base_t[None]).reshape(-1, 4)


def select(boxes: Tensor, scores: Tensor, labels: Tensor, score_threshold: float, nms_iou: float,
           max_detections: int, image_size: int, pre_nms: int = 1000) -> dict[str, Tensor]:
    """Threshold, keep the ``pre_nms`` best, clip to the image, class-aware NMS, cap."""
    keep = scores > score_threshold
    boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
    if len(scores) > pre_nms:
        top = scores.topk(pre_nms).indices
        boxes, scores, labels = boxes[top], scores[top], labels[top]
    boxes = boxes.clamp(0, image_size)
    kept = batched_nms(boxes, scores, labels, nms_iou)[:max_detections]
    return {"boxes": boxes[kept], "scores": scores[kept], "labels": labels[kept]}
