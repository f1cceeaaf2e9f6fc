"""Freezing and unfreezing a transferred backbone through Lightning's ``BaseFinetuning``."""

from __future__ import annotations

import lightning as L
import torch
from lightning.pytorch.callbacks import BaseFinetuning


def backbone_modules(net: torch.nn.Module, head_names: tuple[str, ...] | list[str]) -> list[torch.nn.Module]:
    """The modules of ``net`` holding parameters, less its head (the modules ``head_names`` names
    and everything inside them)."""
    head = tuple(head_names)
    return [m for name, m in net.named_modules()
            if (not list(m.children()) or m._parameters) and not any(name == h or name.startswith(h + ".") for h in head)]


class BackboneFreeze(BaseFinetuning):
    """The backbone (every layer but the net's ``head_names``) is frozen from the start of fit and
    made trainable at epoch ``unfreeze_at_epoch`` (never, when None). Its parameters stay in the
    optimiser throughout (their own learning rate: ``backbone_lr_mult``), so unfreezing adds no
    parameter group and a resumed run picks up where it was, frozen or not. While frozen, batch
    norm layers keep the running statistics they were loaded with (inference mode), as in Keras'
    transfer-learning guide."""

    def __init__(self, unfreeze_at_epoch: int | None = None):
        super().__init__()
        self.unfreeze_at_epoch = unfreeze_at_epoch

    def _backbone(self, pl_module: L.LightningModule) -> list[torch.nn.Module]:
        return backbone_modules(pl_module.net, pl_module.net.head_names)

    def freeze_before_training(self, pl_module: L.LightningModule) -> None:
        self.freeze(self._backbone(pl_module), train_bn=False)

    def finetune_function(self, pl_module: L.LightningModule, epoch: int, optimizer: torch.optim.Optimizer) -> None:
        backbone = self._backbone(pl_module)
        if self.unfreeze_at_epoch is not None and epoch >= self.unfreeze_at_epoch:
            self.make_trainable(backbone)
            return
        for m in backbone:  # frozen: batch norm normalises with the loaded statistics
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.eval()
