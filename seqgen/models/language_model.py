"""LanguageModel: next-token prediction with truncated backpropagation through time.

Lightning 2 has no built-in truncated BPTT, so it lives here, in a dozen lines as in
pytorch/examples: the data module yields contiguous chunks (see
:mod:`seqgen.data.language_modeling`); the recurrent state left by one chunk is the initial
state of the next, detached so gradients stop at the chunk boundary. States are kept per
stage (train/val/test) and reset at the start of every epoch and of every evaluation, so a
validation pass in the middle of training never disturbs the training stream.

Metrics are exact token-weighted means (torchmetrics ``MeanMetric`` with the token count as
weight, synchronised across DDP ranks): ``loss`` in nats/token, ``ppl = exp(loss)`` and, for
character models only, ``bpc = loss / ln 2`` (a word or subword model's loss in bits would be bits
per *token*; it reports ``ppl``).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics.aggregation import MeanMetric

from seqgen.errors import ConfigError
from seqgen.models.base import SeqgenModule, build_net, net_takes
from seqgen.nets.recurrent import State, detach_state

LEVELS = ("char", "word", "sentencepiece")


class LanguageModel(SeqgenModule):
    """Args:
    vocab_size: from the data module.
    net: ``{"_target_": "seqgen.nets.RNNLM", ...}`` (plain data: saved in the checkpoint) or a module.
    level: ``char``, ``word`` or ``sentencepiece`` (from the data module's ``dims``): only ``char``
        reports ``bpc``. No default: a level that did not arrive must not pass for ``char``.
    optimizer, scheduler, skip_nonfinite, compile: see :class:`SeqgenModule`.
    """

    def __init__(
        self,
        vocab_size: int,
        net: dict[str, Any] | torch.nn.Module,
        level: str,
        optimizer: dict[str, Any] | None = None,
        scheduler: dict[str, Any] | None = None,
        skip_nonfinite: bool = False,
        compile: bool = False,
    ):
        super().__init__(optimizer, scheduler, skip_nonfinite, compile)
        plain_net = self.save_hparams_with_net(net)
        self.net = build_net(net, vocab_size=vocab_size) if plain_net else net
        # a net whose forward takes ``targets`` returns the loss itself (RNNLM: decoder and
        # cross-entropy fused, see seqgen.nets.losses); any other net returns logits
        self._net_takes_targets = net_takes(self.net, "targets")
        if level not in LEVELS:
            raise ConfigError(f"level must be one of {', '.join(LEVELS)}, got {level!r}")
        self.vocab_size, self.level = vocab_size, level
        self._states: dict[str, State | None] = {}
        self.eval_loss = torch.nn.ModuleDict({s: MeanMetric() for s in ("val", "test")})

    # -- truncated BPTT state -------------------------------------------------------------
    def _state(self, stage: str, batch_size: int) -> State | None:
        state = self._states.get(stage)
        if state is None:
            return None
        h = state[0] if isinstance(state, tuple) else state
        if h.device != self.device:  # restored from a checkpoint
            state = tuple(s.to(self.device) for s in state) if isinstance(state, tuple) else state.to(self.device)
        return state if h.size(1) == batch_size else None

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # the recurrent state carried between truncated-BPTT chunks: a mid-epoch resume continues from it
        checkpoint["tbptt_state"] = self._states.get("train")

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint.get("tbptt_state")
        self._states["train"] = state  # reset anyway at the next epoch start; kept when resuming mid-epoch

    def reset_state(self, stage: str) -> None:
        self._states[stage] = None

    def on_train_epoch_start(self) -> None:
        self.reset_state("train")

    def on_validation_epoch_start(self) -> None:
        self.reset_state("val")

    def on_test_epoch_start(self) -> None:
        self.reset_state("test")

    def forward(self, tokens: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        return self.net(tokens, state)

    def _loss(self, stage: str, batch: tuple[Tensor, Tensor]) -> Tensor:
        x, y = batch
        state = self._state(stage, x.size(0))
        if self._net_takes_targets:
            loss, state = self.net(x, state, targets=y)
        else:
            logits, state = self.net(x, state)
            loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), y.reshape(-1))
        self._states[stage] = detach_state(state)  # the truncation point
        return loss

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor | None:
        loss = self._loss("train", batch)
        self.log("train/loss", loss, prog_bar=False, on_step=True, on_epoch=True, sync_dist=False)
        return self.finite_or_skip(loss)

    def _eval_step(self, stage: str, batch: tuple[Tensor, Tensor]) -> None:
        loss = self._loss(stage, batch)
        self.eval_loss[stage].update(loss.detach(), weight=batch[1].numel())

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._eval_step("val", batch)

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._eval_step("test", batch)

    def _log_eval(self, stage: str) -> None:
        metric = self.eval_loss[stage]
        if metric.update_count == 0:
            return
        loss = metric.compute()  # token-weighted mean over all ranks
        metric.reset()
        self.log(f"{stage}/loss", loss, prog_bar=True)
        self.log(f"{stage}/ppl", torch.exp(loss.clamp(max=50.0)))
        if self.level == "char":
            self.log(f"{stage}/bpc", loss / math.log(2), prog_bar=True)

    def on_validation_epoch_end(self) -> None:
        self._log_eval("val")

    def on_test_epoch_end(self) -> None:
        self._log_eval("test")

    @torch.no_grad()
    def generate(self, prompt: Tensor, max_new_tokens: int = 200, temperature: float = 1.0,
                 top_k: int | None = None, top_p: float | None = None,
                 generator: torch.Generator | None = None) -> Tensor:
        from seqgen.nets.language import sample_continuation

        net = getattr(self.net, "_orig_mod", self.net)
        return sample_continuation(net, prompt.to(self.device), max_new_tokens, temperature, top_k, top_p, generator)
