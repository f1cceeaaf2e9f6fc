"""YOLOv1 (Redmon et al. 2016): an S x S grid, B boxes per cell, one class distribution per cell.

Output per cell: B x (x, y, sqrt w, sqrt h, confidence) and C class probabilities. (x, y) is the
box centre's offset inside its cell, (sqrt w, sqrt h) the square roots of the box size relative to
the image, all through a sigmoid; class probabilities through a softmax. The loss is the paper's
sum of squared errors: lambda_coord (5) on the coordinates of the responsible box (the one of the
cell holding an object's centre whose prediction overlaps it most), its confidence against that
IoU, lambda_noobj (0.5) on the confidence of every other box, and the class probabilities of the
cells holding an object. A cell holds one object (the largest, when centres share a cell): YOLOv1's
known limit on crowded scenes.

Deviation from the paper, said here: the two fully connected layers after the backbone are a 3x3 and
a 1x1 convolution (as Fast YOLO and YOLOv2 went on to), so any catalogue backbone and image size
work; S is the backbone's map size at the configured image size, or ``grid`` (adaptive pooling).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from seqgen.nets.detection.backbone import build_trunk, conv_block
from seqgen.nets.detection.boxes import paired_iou, select
from seqgen.utils import check_positive


class YOLOv1(nn.Module):
    def __init__(self, num_classes: int, in_channels: int = 3, image_size: int = 448, backbone: str = "resnet18",
                 grid: int | None = None, boxes_per_cell: int = 2, head_channels: int = 256,
                 lambda_coord: float = 5.0, lambda_noobj: float = 0.5):
        super().__init__()
        check_positive("boxes_per_cell", boxes_per_cell)
        self.backbone, (c, h, w), _ = build_trunk(backbone, in_channels, image_size)
        self.grid = (grid, grid) if grid else (h, w)
        pool = [nn.AdaptiveAvgPool2d(self.grid)] if grid else []
        self.num_classes, self.B, self.image_size = num_classes, boxes_per_cell, image_size
        self.lambda_coord, self.lambda_noobj = lambda_coord, lambda_noobj
        self.head = nn.Sequential(*conv_block(c, head_channels), *pool,
                                  nn.Conv2d(head_channels, boxes_per_cell * 5 + num_classes, 1))
        self.head_names = ("head.3" if not grid else "head.4",)

    def forward(self, x: Tensor) -> Tensor:
        """(N, S, S, B * 5 + C) raw outputs."""
        return self.head(self.backbone(x)).permute(0, 2, 3, 1)

    def _boxes(self, raw: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """The sigmoid outputs (N, S, S, B, 5), decoded (N, S, S, B, 4) xyxy pixel boxes, (N, S, S, B)
        confidences and (N, S, S, C) class probabilities."""
        n, sy, sx, _ = raw.shape
        b = raw[..., : 5 * self.B].reshape(n, sy, sx, self.B, 5).float().sigmoid()
        cell_y = torch.arange(sy, device=raw.device).view(1, sy, 1, 1)
        cell_x = torch.arange(sx, device=raw.device).view(1, 1, sx, 1)
        cx = (cell_x + b[..., 0]) / sx * self.image_size
        cy = (cell_y + b[..., 1]) / sy * self.image_size
        w, h = b[..., 2] ** 2 * self.image_size, b[..., 3] ** 2 * self.image_size
        boxes = torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], -1)
        return b, boxes, b[..., 4], raw[..., 5 * self.B:].float().softmax(-1)

    def loss(self, raw: Tensor, targets: list[dict[str, Tensor]]) -> dict[str, Tensor]:
        n, sy, sx, _ = raw.shape
        dev = raw.device
        b, boxes, conf, probs = self._boxes(raw)
        obj = torch.zeros(n, sy, sx, self.B, dtype=torch.bool, device=dev)
        t_xywh = torch.zeros(n, sy, sx, self.B, 4, device=dev)
        t_conf = torch.zeros(n, sy, sx, self.B, device=dev)
        t_cls = torch.zeros(n, sy, sx, self.num_classes, device=dev)
        cell_obj = torch.zeros(n, sy, sx, dtype=torch.bool, device=dev)
        gt = torch.cat([t["boxes"].float().reshape(-1, 4) for t in targets])
        if len(gt):
            img = torch.cat([torch.full((len(t["labels"]),), i, device=dev) for i, t in enumerate(targets)])
            lab = torch.cat([t["labels"] for t in targets])
            gx = (gt[:, 0] + gt[:, 2]) / 2 / self.image_size * sx
            gy = (gt[:, 1] + gt[:, 3]) / 2 / self.image_size * sy
            cj, ci = gx.long().clamp(0, sx - 1), gy.long().clamp(0, sy - 1)
            # one object per cell, the largest: sort by area (descending), then by cell, keep each cell's first
            order = torch.argsort((gt[:, 2] - gt[:, 0]) * (gt[:, 3] - gt[:, 1]), descending=True, stable=True)
            cell = ((img * sy + ci) * sx + cj)[order]
            order = order[torch.argsort(cell, stable=True)]
            cell = cell.sort(stable=True).values
            first = torch.ones_like(cell, dtype=torch.bool)
            first[1:] = cell[1:] != cell[:-1]
            k = order[first]
            img, ci, cj, lab, gt, gx, gy = img[k], ci[k], cj[k], lab[k], gt[k], gx[k], gy[k]
            with torch.no_grad():  # the responsible box: the cell's prediction overlapping the object most
                ious = paired_iou(boxes[img, ci, cj], gt[:, None])  # (K, B)
                iou, r = ious.max(1)
            obj[img, ci, cj, r] = True
            t_conf[img, ci, cj, r] = iou
            size = (gt[:, 2:] - gt[:, :2]).clamp_min(0) / self.image_size
            t_xywh[img, ci, cj, r] = torch.stack([gx - cj, gy - ci, size[:, 0].sqrt(), size[:, 1].sqrt()], -1)
            t_cls[img, ci, cj, lab] = 1.0
            cell_obj[img, ci, cj] = True
        coord = ((b[..., :4] - t_xywh) ** 2).sum(-1)[obj].sum()
        conf_obj = ((conf - t_conf) ** 2)[obj].sum()
        conf_noobj = (conf ** 2)[~obj].sum()
        cls = ((probs - t_cls) ** 2).sum(-1)[cell_obj].sum()
        parts = {"coord": self.lambda_coord * coord / n, "obj": conf_obj / n, "noobj": self.lambda_noobj * conf_noobj / n,
                 "cls": cls / n}
        return {"loss": sum(parts.values()), **parts}

    @torch.no_grad()
    def predict(self, raw: Tensor, score_threshold: float = 0.05, nms_iou: float = 0.5,
                max_detections: int = 100) -> list[dict[str, Tensor]]:
        """Per image: boxes (xyxy pixels), scores (confidence x class probability of the box's best
        class) above ``score_threshold``, labels; class-aware NMS, at most ``max_detections``."""
        _, boxes, conf, probs = self._boxes(raw)
        n = raw.size(0)
        best, label = probs.max(-1)  # (N, S, S)
        scores = conf * best[..., None]  # (N, S, S, B)
        labels = label[..., None].expand_as(scores)
        return [select(boxes[i].reshape(-1, 4), scores[i].reshape(-1), labels[i].reshape(-1), score_threshold, nms_iou,
                       max_detections, self.image_size) for i in range(n)]
