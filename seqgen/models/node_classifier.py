"""NodeClassifier: semi-supervised node classification on one graph (GCN, GAT, any net that maps
``(x, edge_index)`` to class scores per node).

A batch is the whole graph (``x``, ``edge_index``, ``y`` and boolean ``train_mask``/``val_mask``/
``test_mask``, as :class:`seqgen.data.graphs.GraphDataModule` gives it): a training step is one
full-graph forward pass with the cross-entropy of the labelled training nodes; validation and test
score their own nodes (torchmetrics accuracy and macro-F1). After the test the model keeps the
nodes' last hidden representations and labels (``test_embedding``) and the confusion matrix, for
the plotting callbacks.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics.classification import MulticlassAccuracy, MulticlassConfusionMatrix, MulticlassF1Score

from seqgen.models.base import SeqgenModule, build_net


class NodeClassifier(SeqgenModule):
    def __init__(self, net: dict[str, Any] | torch.nn.Module, num_features: int, num_classes: int,
                 optimizer: dict[str, Any] | None = None, scheduler: dict[str, Any] | None = None,
                 skip_nonfinite: bool = False, compile: bool = False):
        super().__init__(optimizer, scheduler, skip_nonfinite, compile)
        self.save_hparams_with_net(net)
        self.net = build_net(net, num_features=num_features, num_classes=num_classes)
        self.num_classes = num_classes
        self.metrics = torch.nn.ModuleDict({f"{stage}_acc": MulticlassAccuracy(num_classes, average="micro")
                                            for stage in ("train", "val", "test")})
        self.metrics["val_f1"] = MulticlassF1Score(num_classes, average="macro")
        self.metrics["test_f1"] = MulticlassF1Score(num_classes, average="macro")
        self.confmat = MulticlassConfusionMatrix(num_classes)
        self.test_confusion: Tensor | None = None
        self.test_mistakes: list[tuple[Tensor, int, int]] = []  # images only; none for graphs
        self.test_embedding: tuple[Tensor, Tensor, Tensor] | None = None  # (hidden (N, d), labels, train mask)

    def forward(self, x: Tensor, edge_index: Tensor) -> Tensor:
        return self.net(x, edge_index)

    def _step(self, stage: str, g: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        mask = g[f"{stage}_mask"]
        logits = self.net(g["x"], g["edge_index"])[mask].float()
        y = g["y"][mask]
        loss = F.cross_entropy(logits, y)
        self.log(f"{stage}/loss", loss, prog_bar=True, on_step=False, on_epoch=True, batch_size=1)
        for name in ("acc", "f1"):
            key = f"{stage}_{name}"
            if key in self.metrics:
                self.metrics[key].update(logits.detach(), y)
                self.log(f"{stage}/{name}", self.metrics[key], on_step=False, on_epoch=True, prog_bar=name == "acc")
        return loss, logits

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor | None:
        loss, _ = self._step("train", batch)
        return self.finite_or_skip(loss)

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self._step("val", batch)

    def test_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        _, logits = self._step("test", batch)
        self.confmat.update(logits, batch["y"][batch["test_mask"]])
        hidden = self.net.embed(batch["x"], batch["edge_index"]) if hasattr(self.net, "embed") else None
        if hidden is not None:
            self.test_embedding = (hidden.detach().float().cpu(), batch["y"].cpu(), batch["train_mask"].cpu())

    def on_test_epoch_end(self) -> None:
        self.test_confusion = self.confmat.compute().cpu()
        self.confmat.reset()
