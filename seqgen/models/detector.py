"""Detector: one LightningModule for object detection (YOLOv1, FCOS, any net with the same three
members: ``forward``, ``loss(raw, targets)`` and ``predict(raw, ...)``; see :mod:`seqgen.nets.detection`).

A batch is ``(images, targets)``, one ``{"boxes" (n, 4) xyxy pixels, "labels"[, "iscrowd"]}`` per
image. Validation and test report the COCO protocol's mAP@[.5:.95] (``map``), mAP@0.5
(``map_50``) and mAP@0.75 (:class:`DetectionMAP`, faster-coco-eval), and the test the AP of each
class (``ap_<k>``). ``augment``: box-aware batched augmentations (:mod:`seqgen.nets.detection.transforms`).

Transfer: ``init_from`` names a seqgen Classifier run of the same catalogue net as the detector's
backbone (e.g. ``mnist_lenet_modern`` for ``lenet_modern``); every tensor of its net whose name and
shape match the backbone's is copied (the classifier's head is not part of a backbone).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from seqgen.errors import CheckpointError
from seqgen.models.base import SeqgenModule, build_net
from seqgen.models.detection_metrics import DetectionMAP
from seqgen.utils import build


class Detector(SeqgenModule):
    def __init__(self, net: dict[str, Any] | torch.nn.Module, num_classes: int, in_channels: int | None = None,
                 image_size: int | None = None, augment: list[dict[str, Any]] | None = None,
                 init_from: str | None = None, score_threshold: float = 0.05, nms_iou: float = 0.5,
                 max_detections: int = 100, num_show: int = 16, show_threshold: float = 0.3, channels_last: bool = False,
                 optimizer: dict[str, Any] | None = None, scheduler: dict[str, Any] | None = None,
                 skip_nonfinite: bool = False, compile: bool = False):
        super().__init__(optimizer, scheduler, skip_nonfinite, compile)
        if not 0 <= score_threshold < 1 or not 0 < nms_iou <= 1:
            raise ValueError(f"score_threshold must be in [0, 1) and nms_iou in (0, 1], got {score_threshold}, {nms_iou}")
        self.save_hparams_with_net(net)
        self.net = build_net(net, num_classes=num_classes, in_channels=in_channels, image_size=image_size)
        self.use_channels_last(channels_last)  # a digits_detect_fcos training step: 66-77 -> 49 ms on 2 AVX2 cores
        from seqgen.nets.detection.transforms import DetectionAugment

        self.augment = DetectionAugment([build(s) for s in (augment or [])])
        self.num_classes, self.init_from = num_classes, init_from
        self.score_threshold, self.nms_iou, self.max_detections = score_threshold, nms_iou, max_detections
        self.num_show, self.show_threshold = num_show, show_threshold
        self.val_map = DetectionMAP(num_classes, class_metrics=False, max_detections=max_detections)
        self.test_map = DetectionMAP(num_classes, class_metrics=True, max_detections=max_detections)
        self.loaded_from_init: list[str] = []
        self._examples: tuple[Tensor, list[dict[str, Tensor]], list[dict[str, Tensor]]] | None = None

    def forward(self, images: Tensor) -> Any:
        return self.net(self.to_layout(images))

    @torch.no_grad()
    def detect(self, images: Tensor) -> list[dict[str, Tensor]]:
        """Boxes, scores and labels per image, with this model's thresholds."""
        return self.net.predict(self(images), self.score_threshold, self.nms_iou, self.max_detections)

    def training_step(self, batch: tuple[Tensor, list[dict[str, Tensor]]], batch_idx: int) -> Tensor | None:
        images, targets = batch
        if len(self.augment):
            images, targets = self.augment(images, targets)
        losses = self.net.loss(self(images), targets)
        n = images.size(0)
        self.log("train/loss", losses["loss"], prog_bar=False, on_step=True, on_epoch=True, batch_size=n)
        for k, v in losses.items():
            if k != "loss":
                self.log(f"train/{k}", v, on_step=False, on_epoch=True, batch_size=n)
        return self.finite_or_skip(losses["loss"])

    def _eval_step(self, stage: str, batch: tuple[Tensor, list[dict[str, Tensor]]], batch_idx: int) -> None:
        images, targets = batch
        raw = self(images)
        self.log(f"{stage}/loss", self.net.loss(raw, targets)["loss"], on_step=False, on_epoch=True,
                 batch_size=images.size(0), sync_dist=True)
        preds = self.net.predict(raw, self.score_threshold, self.nms_iou, self.max_detections)
        (self.val_map if stage == "val" else self.test_map).update(preds, targets)
        if batch_idx == 0:
            k = self.num_show
            self._examples = (images[:k].detach(), [t for t in targets[:k]], preds[:k])

    def validation_step(self, batch: tuple[Tensor, list[dict[str, Tensor]]], batch_idx: int) -> None:
        self._eval_step("val", batch, batch_idx)

    def test_step(self, batch: tuple[Tensor, list[dict[str, Tensor]]], batch_idx: int) -> None:
        self._eval_step("test", batch, batch_idx)

    def _log_map(self, stage: str, metric: DetectionMAP) -> None:
        result = metric.compute()
        for k in ("map", "map_50", "map_75"):
            self.log(f"{stage}/{k}", result[k], prog_bar=k == "map_50")
        for c, ap in enumerate(result.get("map_per_class", torch.empty(0)).tolist()):
            if ap >= 0:
                self.log(f"{stage}/ap_{c}", ap)
        metric.reset()

    def on_validation_epoch_end(self) -> None:
        if not self.trainer.sanity_checking:
            self._log_map("val", self.val_map)
        else:
            self.val_map.reset()

    def on_test_epoch_end(self) -> None:
        self._log_map("test", self.test_map)

    def visuals(self, stage: str = "val") -> dict[str, tuple[Tensor, int]]:
        """``detections``: images with the predicted boxes scoring at least ``show_threshold`` (class colour,
        score) over the true ones (white)."""
        if self._examples is None:
            return {}
        from seqgen.nets.detection.draw import draw_boxes

        images, targets, preds = self._examples
        scale = max(1, 256 // images.size(-1))
        drawn = []
        for x, t, p in zip(images, targets, preds):
            keep = p["scores"] >= self.show_threshold  # the metric keeps everything above 0.05; a picture needs less
            drawn.append(draw_boxes(x, p["boxes"][keep], p["labels"][keep], p["scores"][keep], scale=scale, truth=t["boxes"]))
        return {"detections": (torch.stack(drawn), 4)}

    def load_backbone_state(self, state_dict: Mapping[str, Tensor], source: str = "the checkpoint") -> list[str]:
        """Copy a classifier's net tensors (``net.<name>``) into the backbone (``backbone.<name>``)
        where names and shapes match; return the names loaded."""
        own = self.net.state_dict()
        take = {}
        for k, v in state_dict.items():
            if k.startswith("net."):
                mine = "backbone." + k[len("net."):]
                if mine in own and own[mine].shape == v.shape:
                    take[mine] = v
        if not take:
            raise CheckpointError(f"init_from: no tensor of {source} fits this detector's backbone "
                                  "(a classifier of the same catalogue net is needed)")
        self.net.load_state_dict(take, strict=False)
        return sorted(take)
