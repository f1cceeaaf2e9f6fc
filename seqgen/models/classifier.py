"""Classifier: one LightningModule for every classification recipe (MLPs, CNNs, text encoders).

The net is injected (a ``{"_target_": ...}`` mapping built with the data module's dimensions:
``num_classes``, ``input_size``, ``in_channels``, ``image_size``, ``vocab_size`` -- each net
takes the ones it needs). Losses: ``cross_entropy`` (with label smoothing) or ``mse`` -- squared
error between the softmax output and the one-hot target, the loss of the "square error vs
cross-entropy" lesson. Metrics (torchmetrics, DDP-synchronised): accuracy, top-5 accuracy,
macro-F1 in validation and test; in training, the accuracy of the epoch's batches (the same
micro accuracy, from a few kernels a step); the test confusion matrix is kept in
``test_confusion`` for plotting callbacks.
``augment``: a list of batched augmentations (:mod:`seqgen.nets.augment`), training only.

Transfer learning: ``init_from`` (a checkpoint, or a run folder's ``checkpoints/last.ckpt``) names
another seqgen classifier; ``seqgen.train.run`` hands its state to ``load_backbone_state``, which
copies every tensor whose name and shape match except the head (every Linear/Conv2d that
outputs ``num_classes``), left freshly initialised for the new classes. A resumed run skips it
(the resumed checkpoint holds the trained weights). ``init_from=torchvision:<name>`` or
``timm:<name>`` loads those libraries' ImageNet weights into the same seqgen architecture (tensors
paired in order, shapes checked) when the package is installed. ``freeze_backbone`` trains the head only (backbone batch-norm
statistics frozen too) until epoch ``unfreeze_at_epoch``; ``backbone_lr_mult`` gives the
backbone its own learning rate (discriminative fine-tuning).
``log_grad_norms`` logs the gradient norm of every weight matrix each ``grad_norm_every`` steps
as ``grad_norm/<parameter>`` (watch gradients vanish in deep sigmoid nets).
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics.classification import MulticlassAccuracy, MulticlassConfusionMatrix, MulticlassF1Score

from seqgen.errors import ConfigError
from seqgen.models.base import SeqgenModule, build_net, net_takes
from seqgen.utils import check_probability

LOSSES = ("cross_entropy", "mse")


def mse_on_softmax(logits: Tensor, target: Tensor) -> Tensor:
    """Mean over the batch of sum_k (softmax(z)_k - onehot_k)^2."""
    p = torch.softmax(logits.float(), -1)
    onehot = F.one_hot(target, p.size(-1)).to(p.dtype)
    return ((p - onehot) ** 2).sum(-1).mean()


class Classifier(SeqgenModule):
    def __init__(self, net: dict[str, Any] | torch.nn.Module, num_classes: int, loss: str = "cross_entropy",
                 label_smoothing: float = 0.0, log_grad_norms: bool = False, grad_norm_every: int = 1,
                 augment: list[dict[str, Any]] | None = None,
                 init_from: str | None = None, freeze_backbone: bool = False, unfreeze_at_epoch: int | None = None,
                 backbone_lr_mult: float = 1.0, channels_last: bool = False,
                 optimizer: dict[str, Any] | None = None, scheduler: dict[str, Any] | None = None,
                 skip_nonfinite: bool = False, compile: bool = False, in_channels: int | None = None,
                 image_size: int | list[int] | None = None, input_size: int | None = None,
                 vocab_size: int | None = None):
        """``num_classes`` and the input's dimensions come from the data module (``dims``): images
        give ``in_channels``, ``image_size`` and ``input_size`` (flattened, for MLPs), text gives
        ``vocab_size``; each is passed to the net when its constructor names it."""
        super().__init__(optimizer, scheduler, skip_nonfinite, compile)
        if loss not in LOSSES:
            raise ConfigError(f"unknown loss {loss!r}; available: {', '.join(LOSSES)}")
        check_probability("model.label_smoothing", label_smoothing)
        self.save_hparams_with_net(net)
        self.net = build_net(net, num_classes=num_classes, in_channels=in_channels, image_size=image_size,
                             input_size=input_size, vocab_size=vocab_size)
        from seqgen.nets.augment import build_augment

        self.augment = build_augment(augment)  # active in training mode only
        self.num_classes, self.loss_name, self.label_smoothing = num_classes, loss, label_smoothing
        self.log_grad_norms, self.grad_norm_every = log_grad_norms, grad_norm_every
        k = min(5, num_classes)
        make = {"acc": lambda: MulticlassAccuracy(num_classes, average="micro"),
                "top5": lambda: MulticlassAccuracy(num_classes, top_k=k, average="micro"),
                "f1": lambda: MulticlassF1Score(num_classes, average="macro")}
        # validation and test: torchmetrics objects. Training tracks accuracy only, as a tensor (``_step``)
        self.metric_names = {"train": (), "val": tuple(make), "test": tuple(make)}
        self.metrics = torch.nn.ModuleDict({f"{stage}_{name}": make[name]()
                                            for stage, names in self.metric_names.items() for name in names})
        self.confmat = MulticlassConfusionMatrix(num_classes)
        self.init_from, self.freeze_backbone, self.unfreeze_at_epoch = init_from, freeze_backbone, unfreeze_at_epoch
        self.backbone_lr_mult = backbone_lr_mult
        self.use_channels_last(channels_last)
        self.loaded_from_init: list[str] = []
        self.test_confusion: Tensor | None = None
        self.test_mistakes: list[tuple[Tensor, int, int]] = []  # (image, true, predicted), for plotting callbacks
        self.max_mistakes = 36

    def forward(self, x: Tensor) -> Tensor:
        out = self.net(x)
        return out.logits if hasattr(out, "logits") else out

    def _net_takes_lengths(self) -> bool:
        takes = self.__dict__.get("_takes_lengths")
        if takes is None:
            takes = self.__dict__["_takes_lengths"] = net_takes(self.net, "lengths")
        return takes

    def loss_fn(self, logits: Tensor, y: Tensor) -> Tensor:
        if self.loss_name == "mse":
            return mse_on_softmax(logits, y)
        return F.cross_entropy(logits.float(), y, label_smoothing=self.label_smoothing)

    def _step(self, stage: str, batch: tuple[Tensor, ...]) -> tuple[Tensor, Tensor | None]:
        x, y = batch[0], batch[1]
        if stage == "train" and len(self.augment):
            x = self.augment(x)
        x = self.to_layout(x)
        # a third element (text batches: each row's token count, on the host) goes to a net that takes ``lengths``
        out = self.net(x, lengths=batch[2]) if len(batch) > 2 and self._net_takes_lengths() else self.net(x)
        logits = out.logits if hasattr(out, "logits") else out
        loss = self.loss_fn(logits, y)
        # auxiliary heads (GoogLeNet's outputs in training) add their weighted losses
        for aux in getattr(out, "aux", ()):
            loss = loss + self.net.aux_weight * self.loss_fn(aux, y)
        on_step = stage == "train"
        probs = None if on_step else logits.detach().float()  # for the metrics of validation and test
        self.log(f"{stage}/loss", loss, prog_bar=not on_step, on_step=on_step, on_epoch=True, sync_dist=stage != "train",
                 batch_size=y.size(0))
        if on_step:
            # the epoch's training accuracy is the batch-size-weighted mean of each batch's (all examples'
            # correct / total: MulticlassAccuracy(average="micro"), synchronised over DDP ranks at the epoch's
            # end), from three kernels: a torchmetrics update takes 40 us warm and 130 us right after a forward
            # (its Python path cold), 3.6% of a digits LeNet step; tests/test_mlp.py holds the two equal
            correct = (logits.detach().argmax(-1) == y).float().mean()
            self.log("train/acc", correct, on_step=False, on_epoch=True, prog_bar=True, batch_size=y.size(0), sync_dist=True)
        for name in self.metric_names[stage]:
            metric = self.metrics[f"{stage}_{name}"]
            metric.update(probs, y)
            self.log(f"{stage}/{name}", metric, on_step=False, on_epoch=True, prog_bar=name == "acc")
        return loss, probs

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor | None:
        loss, _ = self._step("train", batch)
        return self.finite_or_skip(loss)

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._step("val", batch)

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        _, probs = self._step("test", batch)
        self.confmat.update(probs, batch[1])
        x, y = batch[0], batch[1]
        if x.dim() == 4 and len(self.test_mistakes) < self.max_mistakes:  # images: keep a few errors to show
            pred = probs.argmax(-1)
            for i in torch.nonzero(pred != y).view(-1)[: self.max_mistakes - len(self.test_mistakes)].tolist():
                self.test_mistakes.append((x[i].detach().float().cpu(), int(y[i]), int(pred[i])))

    def on_test_epoch_start(self) -> None:
        self.test_mistakes = []

    def on_test_epoch_end(self) -> None:
        self.test_confusion = self.confmat.compute().cpu()
        self.confmat.reset()

    @torch.no_grad()
    def features_and_logits(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(penultimate features, logits) for a batch: the input of the net's last Linear layer.
        ``input_norm`` (mean, std per channel), when set, standardises ``x`` first: generative
        models hand in [0, 1] images to a classifier trained on standardised ones."""
        norm = getattr(self, "input_norm", None)
        if norm is not None:
            mean, std = (torch.as_tensor(v, dtype=x.dtype, device=x.device).view(1, -1, 1, 1) for v in norm)
            x = (x - mean) / std
        last = [m for m in self.net.modules() if isinstance(m, torch.nn.Linear)][-1]
        captured: list[Tensor] = []
        hook = last.register_forward_hook(lambda m, inp, out: captured.append(inp[0]))
        try:
            logits = self.net(x)
        finally:
            hook.remove()
        return captured[-1].flatten(1).float(), logits.float()

    # -- transfer learning ------------------------------------------------------------------
    def head_parameter_names(self) -> set[str]:
        """The parameters of the net's head, as the net names it (``head_names``: the modules that
        make the class scores, which transfer learning replaces and never freezes)."""
        names = getattr(self.net, "head_names", None)
        if names is None:
            if self.init_from or self.freeze_backbone or self.backbone_lr_mult != 1.0:
                raise ConfigError(f"{type(self.net).__name__} does not name its head (a head_names attribute): "
                                  "transfer learning, freezing and backbone_lr_mult need it")
            return set()
        return {f"{m}.{p}" for m in names for p, _ in self.net.get_submodule(m).named_parameters(recurse=False)}

    def load_backbone_state(self, state_dict: dict[str, Tensor], source: str = "the checkpoint") -> list[str]:
        """Copy the tensors of another classifier's ``state_dict`` whose names and shapes match this
        net, except the head; return their names."""
        from seqgen.errors import CheckpointError

        head = self.head_parameter_names()
        own = self.net.state_dict()
        take: dict[str, Tensor] = {}
        # another classifier ("net.*"), or an autoencoder whose encoder keeps a classifier's layout ("net.encoder.*")
        for prefix in ("net.", "net.encoder."):
            src = {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}
            take = {k: v for k, v in src.items() if k in own and k not in head and own[k].shape == v.shape}
            if take:
                break
        if not take:
            raise CheckpointError(f"init_from: no tensor of {source} matches this net (another architecture?)")
        self.net.load_state_dict(take, strict=False)
        return sorted(take)

    def load_backbone_in_order(self, state_dict: dict[str, Tensor], source: str) -> list[str]:
        """Copy a state dict written by another library for the same architecture (torchvision, timm:
        other names, same tensors in the same order): tensors are paired in order, every shape must
        match; the head (ImageNet's 1,000 classes) is left out on both sides. Returns our names."""
        from seqgen.errors import CheckpointError

        head = self.head_parameter_names()
        state = self.net.state_dict()
        own = [(k, v) for k, v in state.items() if k not in head]
        theirs = list(state_dict.items())
        theirs = theirs[: len(theirs) - (len(state) - len(own))]  # their head is last, as ours
        if len(own) != len(theirs):
            raise CheckpointError(f"init_from={source}: {len(theirs)} backbone tensors there, {len(own)} in this net "
                                  "(another architecture or variant?)")
        take = {}
        for (ok, ov), (tk, tv) in zip(own, theirs):
            if ov.shape != tv.shape:
                raise CheckpointError(f"init_from={source}: {tk} {tuple(tv.shape)} does not fit {ok} {tuple(ov.shape)}; "
                                      "ImageNet weights need the 224-pixel layout (3 channels; data.image_size=224 for image folders)")
            take[ok] = tv
        self.net.load_state_dict(take, strict=False)
        return sorted(take)

    def configure_callbacks(self) -> list[L.Callback]:
        """``freeze_backbone``: Lightning's BaseFinetuning freezes all but the net's head until
        ``unfreeze_at_epoch`` (seqgen.callbacks.finetuning.BackboneFreeze)."""
        if not self.freeze_backbone:
            return []
        self.head_parameter_names()  # the net must name its head
        from seqgen.callbacks.finetuning import BackboneFreeze

        return [BackboneFreeze(self.unfreeze_at_epoch)]

    def optimizer_groups(self, lr: float, weight_decay: float, decay_all: bool) -> list[dict[str, Any]]:
        from seqgen.models.optim import param_groups

        head = self.head_parameter_names()
        named = list(self.net.named_parameters())
        head_params = [p for n, p in named if n in head]
        backbone = [p for n, p in named if n not in head]
        return (param_groups(backbone, weight_decay, decay_all, include_frozen=True, lr=lr * self.backbone_lr_mult)
                + param_groups(head_params, weight_decay, decay_all, include_frozen=True, lr=lr))

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        if not self.log_grad_norms or self.global_step % self.grad_norm_every:
            return
        for name, p in self.net.named_parameters():
            if p.grad is not None and p.dim() >= 2:
                self.log(f"grad_norm/{name}", p.grad.detach().norm(2), on_step=True, on_epoch=False)
