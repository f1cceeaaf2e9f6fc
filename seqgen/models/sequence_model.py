"""SequenceModel: full backpropagation through time over whole sequences.

``task_type="regression"``: MSE between the net's output and the target (e.g. the adding
problem, output after the last step). ``task_type="tagging"``: cross-entropy over every step
(e.g. copy memory, context tagging), with per-step accuracy and whole-sequence accuracy.
Evaluation metrics are exact example-weighted means over all batches and DDP ranks.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics.aggregation import MeanMetric

from seqgen.errors import ConfigError
from seqgen.models.base import SeqgenModule, build_net


class SequenceModel(SeqgenModule):
    def __init__(self, net: dict[str, Any] | torch.nn.Module, task_type: str = "regression", output_size: int = 1,
                 input_size: int | None = None, vocab_size: int | None = None,
                 optimizer: dict[str, Any] | None = None, scheduler: dict[str, Any] | None = None,
                 skip_nonfinite: bool = False, compile: bool = False):
        super().__init__(optimizer, scheduler, skip_nonfinite, compile)
        if task_type not in ("regression", "tagging"):
            raise ConfigError(f"task_type must be 'regression' or 'tagging', got {task_type!r}")
        if self.save_hparams_with_net(net):
            extra = {"output_size": output_size, "mode": "last" if task_type == "regression" else "every"}
            extra.update({"input_size": input_size} if input_size is not None else {"vocab_size": vocab_size})
            self.net = build_net(net, **extra)
        else:
            self.net = net
        self.task_type = task_type
        names = ["loss"] + (["acc", "seq_acc"] if task_type == "tagging" else [])
        self.metrics = torch.nn.ModuleDict({f"{s}_{n}": MeanMetric() for s in ("val", "test") for n in names})

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)

    def _losses(self, batch: tuple[Tensor, Tensor]) -> dict[str, Tensor]:
        x, y = batch
        out = self.net(x)
        if self.task_type == "regression":
            return {"loss": F.mse_loss(out.float(), y.float())}
        loss = F.cross_entropy(out.reshape(-1, out.size(-1)).float(), y.reshape(-1))
        pred = out.argmax(-1)
        correct = (pred == y).float()
        return {"loss": loss, "acc": correct.mean(), "seq_acc": correct.min(1).values.mean()}

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor | None:
        res = self._losses(batch)
        self.log("train/loss", res["loss"], prog_bar=False, on_step=True, on_epoch=True)
        if "acc" in res:
            self.log("train/acc", res["acc"], on_step=False, on_epoch=True)
        return self.finite_or_skip(res["loss"])

    def _eval(self, stage: str, batch: tuple[Tensor, Tensor]) -> None:
        res = self._losses(batch)
        for k, v in res.items():
            self.metrics[f"{stage}_{k}"].update(v.detach(), weight=batch[0].size(0))

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._eval("val", batch)

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._eval("test", batch)

    def _log_eval(self, stage: str) -> None:
        for key, metric in self.metrics.items():
            if key.startswith(stage + "_") and metric.update_count:
                self.log(f"{stage}/{key[len(stage) + 1:]}", metric.compute(), prog_bar=key.endswith("loss"))
                metric.reset()

    def on_validation_epoch_end(self) -> None:
        self._log_eval("val")

    def on_test_epoch_end(self) -> None:
        self._log_eval("test")
