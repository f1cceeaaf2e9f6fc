"""FCOS (Tian et al. 2019), anchor-free, on one feature level: every location of the backbone's map
predicts class scores (sigmoid, focal loss), the distances (l, t, r, b) from itself to the four
sides of its object's box (``exp`` of the output, in units of the stride; GIoU loss), and a
centre-ness (BCE).

A location is positive for a box when it lies inside the box and within ``center_radius`` strides
of its centre (FCOS's centre sampling); among several such boxes, the smallest. An object that holds
no location (narrower than the stride: a "1") gets the location nearest its centre, so none is
unlearnable. One level instead of
the paper's feature pyramid: the digit canvases hold objects of one octave of sizes; the paper's
size ranges per level would need the pyramid.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from seqgen.nets.detection.backbone import build_trunk, conv_block
from seqgen.nets.detection.boxes import grid_centers, paired_giou, select
from seqgen.utils import check_positive


def sigmoid_focal_loss(logits: Tensor, targets: Tensor, alpha: float = 0.25, gamma: float = 2.0) -> Tensor:
    """Summed focal loss (Lin et al. 2017), torchvision.ops.sigmoid_focal_loss with reduction='sum'."""
    p = logits.sigmoid()
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = p * targets + (1 - p) * (1 - targets)
    loss = ce * (1 - p_t) ** gamma
    if alpha >= 0:
        loss = (alpha * targets + (1 - alpha) * (1 - targets)) * loss
    return loss.sum()


class FCOS(nn.Module):
    def __init__(self, num_classes: int, in_channels: int = 3, image_size: int = 512, backbone: str = "resnet18",
                 head_channels: int = 128, head_convs: int = 2, center_radius: float = 1.5, prior: float = 0.01,
                 pool: int = 1):
        super().__init__()
        self.backbone, (c, h, w), stride = build_trunk(backbone, in_channels, image_size)
        self.num_classes, self.image_size, self.center_radius = num_classes, image_size, center_radius
        check_positive("pool", pool)
        self.pool = pool  # max-pool the backbone's map: a coarser level with a wider view per location
        self.map_size = (h // pool, w // pool)
        self.stride = stride * pool

        def tower() -> nn.Sequential:
            layers = []
            for i in range(head_convs):
                layers += conv_block(c if i == 0 else head_channels, head_channels)
            return nn.Sequential(*layers)

        self.cls_tower, self.reg_tower = tower(), tower()
        self.cls_logits = nn.Conv2d(head_channels, num_classes, 3, padding=1)
        self.bbox_pred = nn.Conv2d(head_channels, 4, 3, padding=1)
        self.centerness = nn.Conv2d(head_channels, 1, 3, padding=1)
        nn.init.constant_(self.cls_logits.bias, -math.log((1 - prior) / prior))
        self.head_names = ("cls_logits",)

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        f = self.backbone(x)
        if self.pool > 1:
            f = F.max_pool2d(f, self.pool)
        c, r = self.cls_tower(f), self.reg_tower(f)
        flat = lambda t: t.flatten(2).transpose(1, 2)  # (N, HW, K) # noqa: E731
        return {"cls": flat(self.cls_logits(c)), "reg": flat(self.bbox_pred(r)).float().clamp(max=8).exp(),
                "ctr": flat(self.centerness(r)).squeeze(-1)}

    def locations(self, device: torch.device) -> Tensor:
        h, w = self.map_size
        return grid_centers(h, w, self.stride, device)

    def _decode(self, reg: Tensor, loc: Tensor) -> Tensor:
        d = reg.float() * self.stride
        return torch.cat([loc - d[..., :2], loc + d[..., 2:]], -1)

    def assign(self, loc: Tensor, targets: list[dict[str, Tensor]]) -> tuple[Tensor, Tensor, Tensor]:
        """For every image and location: the class of its object or -1 (N, L), and the (l, t, r, b)
        distances to that object's sides in pixels (N, L, 4); the smallest eligible object wins."""
        n, dev = len(targets), loc.device
        g = max(1, max(len(t["labels"]) for t in targets))
        gt = torch.zeros(n, g, 4, device=dev)
        labels = torch.full((n, g), -1, dtype=torch.long, device=dev)
        for i, t in enumerate(targets):  # pad to the batch's largest object count
            gt[i, : len(t["labels"])] = t["boxes"].float()
            labels[i, : len(t["labels"])] = t["labels"]
        ltrb = torch.cat([loc[None, :, None] - gt[:, None, :, :2], gt[:, None, :, 2:] - loc[None, :, None]], -1)  # (N, L, G, 4)
        inside = ltrb.min(-1).values > 0
        centre = (gt[..., :2] + gt[..., 2:]) / 2
        near = ((loc[None, :, None] - centre[:, None]).abs() < self.center_radius * self.stride).all(-1)
        area = ((gt[..., 2] - gt[..., 0]) * (gt[..., 3] - gt[..., 1]))[:, None].expand(-1, len(loc), -1)
        ok = inside & near & (labels >= 0)[:, None]
        best_area, best = torch.where(ok, area, torch.full_like(area, float("inf"))).min(-1)
        found = torch.isfinite(best_area)
        cls = torch.where(found, labels.gather(1, best), torch.full_like(best, -1))
        dist = ltrb.gather(2, best[..., None, None].expand(-1, -1, 1, 4)).squeeze(2)
        # an object narrower than the stride may hold no location: it gets the one nearest its centre
        has = torch.zeros(n, g + 1, dtype=torch.bool, device=dev)
        has.scatter_(1, torch.where(found, best, torch.full_like(best, g)), True)
        missing = ~has[:, :g] & (labels >= 0)
        if missing.any():
            ni, gi = missing.nonzero(as_tuple=True)
            li = ((loc[None, :, None] - centre[:, None]) ** 2).sum(-1).argmin(1)[ni, gi]
            cls[ni, li] = labels[ni, gi]
            dist[ni, li] = ltrb[ni, li, gi].clamp_min(0.5)  # the box stretched to reach the location
        return cls, dist

    def loss(self, out: dict[str, Tensor], targets: list[dict[str, Tensor]]) -> dict[str, Tensor]:
        loc = self.locations(out["cls"].device)
        cls_idx, reg_t = self.assign(loc, targets)
        pos = cls_idx >= 0
        cls_t = torch.zeros_like(out["cls"], dtype=torch.float32)
        cls_t[pos] = F.one_hot(cls_idx[pos], self.num_classes).float()
        num_pos = max(1.0, float(pos.sum()))  # one sync a step: the normaliser is a count of the targets, on the host
        cls = sigmoid_focal_loss(out["cls"].float(), cls_t) / num_pos
        if not pos.any():
            zero = out["reg"].sum() * 0 + out["ctr"].sum() * 0
            return {"loss": cls + zero, "cls": cls, "box": zero, "ctr": zero}
        t = reg_t[pos]
        ctr_t = ((t[:, [0, 2]].min(-1).values / t[:, [0, 2]].max(-1).values)
                 * (t[:, [1, 3]].min(-1).values / t[:, [1, 3]].max(-1).values)).clamp_min(0).sqrt()
        locs = loc[None].expand(pos.size(0), -1, -1)[pos]
        pred = self._decode(out["reg"][pos], locs)
        target = torch.cat([locs - t[:, :2], locs + t[:, 2:]], -1)
        box = ((1 - paired_giou(pred, target)) * ctr_t).sum() / ctr_t.sum().clamp_min(1e-6)
        ctr = F.binary_cross_entropy_with_logits(out["ctr"][pos].float(), ctr_t, reduction="sum") / num_pos
        return {"loss": cls + box + ctr, "cls": cls, "box": box, "ctr": ctr}

    @torch.no_grad()
    def predict(self, out: dict[str, Tensor], score_threshold: float = 0.05, nms_iou: float = 0.6,
                max_detections: int = 100) -> list[dict[str, Tensor]]:
        """Per image: every (location, class) whose sqrt(class probability x centre-ness) exceeds
        ``score_threshold``, its decoded box, class-aware NMS, at most ``max_detections``."""
        loc = self.locations(out["cls"].device)
        boxes = self._decode(out["reg"], loc)
        scores = (out["cls"].float().sigmoid() * out["ctr"].float().sigmoid()[..., None]).sqrt()  # (N, L, C)
        results = []
        for i in range(scores.size(0)):
            flat = scores[i].reshape(-1)
            where = torch.nonzero(flat > score_threshold).view(-1)  # gather boxes for the candidates only
            results.append(select(boxes[i][where // self.num_classes], flat[where], where % self.num_classes,
                                  score_threshold, nms_iou, max_detections, self.image_size))
        return results
