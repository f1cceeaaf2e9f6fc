"""Mean average precision by the COCO protocol, as a torchmetrics ``Metric``.

torchmetrics' own ``MeanAveragePrecision`` computes through pycocotools or faster-coco-eval but
refuses to construct without torchvision (it borrows one box-format helper from it), and torchvision
has no build that loads beside this project's torch. This metric keeps torchmetrics' state handling
(list states gathered across DDP ranks) and hands the evaluation to faster-coco-eval's
``COCOeval_faster``, the maintained C++ implementation of COCO's evaluation that torchmetrics uses
as its ``faster_coco_eval`` backend: mAP@[.5:.95], mAP@0.5, mAP@0.75 and per-class AP. Where
torchvision is importable, ``tests/test_detection.py`` checks it equals torchmetrics' metric.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torchmetrics import Metric


def _coco_eval() -> Any:
    try:
        from faster_coco_eval import COCO, COCOeval_faster
    except ImportError as e:
        raise ImportError("detection metrics need faster-coco-eval: pip install 'seqgen[detection]' "
                          "(or faster-coco-eval)") from e
    return COCO, COCOeval_faster


class DetectionMAP(Metric):
    """``update(preds, targets)``: per image ``{"boxes" (n, 4) xyxy, "scores", "labels"}`` and
    ``{"boxes", "labels"[, "iscrowd"]}``. ``compute()`` returns ``map``, ``map_50``, ``map_75`` and,
    with ``class_metrics``, ``map_per_class`` (AP@[.5:.95] per class, -1 where a class has no object)."""

    full_state_update = False

    def __init__(self, num_classes: int, class_metrics: bool = True, max_detections: int = 100, **kwargs: Any):
        super().__init__(**kwargs)
        _coco_eval()  # fail at construction, not after an epoch of training
        self.num_classes, self.class_metrics, self.max_detections = num_classes, class_metrics, max_detections
        for name in ("pred_boxes", "pred_scores", "pred_labels", "gt_boxes", "gt_labels", "gt_crowd"):
            self.add_state(name, default=[], dist_reduce_fx=None)

    def update(self, preds: list[dict[str, Tensor]], targets: list[dict[str, Tensor]]) -> None:
        for p, t in zip(preds, targets):
            self.pred_boxes.append(p["boxes"].detach().float().reshape(-1, 4))
            self.pred_scores.append(p["scores"].detach().float().reshape(-1))
            self.pred_labels.append(p["labels"].detach().long().reshape(-1))
            self.gt_boxes.append(t["boxes"].detach().float().reshape(-1, 4))
            self.gt_labels.append(t["labels"].detach().long().reshape(-1))
            crowd = t.get("iscrowd")
            self.gt_crowd.append(torch.zeros_like(self.gt_labels[-1]) if crowd is None else crowd.detach().long().reshape(-1))

    def _coco(self) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        images, anns, dets = [], [], []
        for i, (gb, gl, gc) in enumerate(zip(self.gt_boxes, self.gt_labels, self.gt_crowd)):
            images.append({"id": i + 1, "width": 1, "height": 1})
            for b, lab, crowd in zip(gb.tolist(), gl.tolist(), gc.tolist()):
                w, h = b[2] - b[0], b[3] - b[1]
                anns.append({"id": len(anns) + 1, "image_id": i + 1, "category_id": lab, "bbox": [b[0], b[1], w, h],
                             "area": w * h, "iscrowd": crowd})
        for i, (pb, ps, pl) in enumerate(zip(self.pred_boxes, self.pred_scores, self.pred_labels)):
            for b, s, lab in zip(pb.tolist(), ps.tolist(), pl.tolist()):
                dets.append({"image_id": i + 1, "category_id": lab, "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]],
                             "score": s})
        gt = {"images": images, "annotations": anns, "categories": [{"id": c} for c in range(self.num_classes)]}
        return gt, dets

    def compute(self) -> dict[str, Tensor]:
        COCO, COCOeval_faster = _coco_eval()
        gt, dets = self._coco()
        nan = torch.tensor(-1.0)
        if not gt["annotations"]:
            return {"map": nan, "map_50": nan, "map_75": nan}
        coco_gt = COCO(gt)
        coco_dt = coco_gt.loadRes(dets) if dets else COCO()
        ev = COCOeval_faster(coco_gt, coco_dt, iouType="bbox", print_function=lambda *a, **k: None)
        ev.params.maxDets = [1, 10, self.max_detections]
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
        stats = ev.stats
        out = {"map": torch.tensor(float(stats[0])), "map_50": torch.tensor(float(stats[1])),
               "map_75": torch.tensor(float(stats[2]))}
        if self.class_metrics:
            precision = torch.as_tensor(ev.eval["precision"])  # (T, R, K, A, M): all areas, the largest maxDets
            per_class = []
            for k in range(precision.size(2)):
                p = precision[:, :, k, 0, -1]
                valid = p[p > -1]
                per_class.append(float(valid.mean()) if valid.numel() else -1.0)
            out["map_per_class"] = torch.tensor(per_class)
        return out
