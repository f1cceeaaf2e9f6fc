"""Translator: sequence-to-sequence training with teacher forcing, evaluated by decoding and sacreBLEU.

The net (``{"_target_": "seqgen.nets.Seq2Seq", ...}``) is built with the data module's
``src_vocab_size``/``tgt_vocab_size``. Training minimises token-level cross-entropy (padding
ignored, ``label_smoothing`` optional) with ``teacher_forcing`` the probability of feeding the gold
previous token (1.0: always; lower: scheduled sampling from the model's own predictions).

Validation and test report ``loss``/``ppl`` (plain cross-entropy per target token, teacher forced)
and decode every sentence -- greedy at validation (``val_beam_size=1``), beam search at test
(``beam_size``, ``len_penalty``) -- then score the detokenised output against the raw reference
strings: ``bleu`` (sacreBLEU's corpus BLEU, 0-100, via torchmetrics ``SacreBLEUScore`` so it is
summed correctly across DDP ranks; ``bleu_tokenize`` ``13a`` by default as in WMT) and
``exact_match`` (fraction of outputs equal to the reference string; the metric of the dates task).

Detokenising needs the target tokenizer: the training data module's ``decode_target`` (found
through ``trainer.datamodule``) or a ``detokenize`` callable set on the module (for use without a
Trainer; ``scripts/translate.py`` decodes with the checkpoint's own tokenizer itself). Decoded test sentences and the attention weights of
the first ``keep_attention`` are kept in ``test_outputs`` for callbacks to save and plot.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics.aggregation import MeanMetric
from torchmetrics.text import SacreBLEUScore

from seqgen.errors import ConfigError
from seqgen.models.base import SeqgenModule, build_net, net_takes


class Translator(SeqgenModule):
    def __init__(self, net: dict[str, Any] | torch.nn.Module, src_vocab_size: int, tgt_vocab_size: int,
                 pad_id: int = 0, bos_id: int = 2, eos_id: int = 3, teacher_forcing: float = 1.0,
                 label_smoothing: float = 0.0, val_beam_size: int = 1, beam_size: int = 5, len_penalty: float = 0.6,
                 max_decode_len: int | None = None, bleu_tokenize: str = "13a", lowercase_bleu: bool = False,
                 keep_attention: int = 4, optimizer: dict[str, Any] | None = None,
                 scheduler: dict[str, Any] | None = None, skip_nonfinite: bool = False, compile: bool = False):
        super().__init__(optimizer, scheduler, skip_nonfinite, compile)
        if not 0.0 <= teacher_forcing <= 1.0:
            raise ConfigError(f"model.teacher_forcing must be in [0, 1], got {teacher_forcing}")
        if not 0.0 <= label_smoothing < 1.0:
            raise ConfigError(f"model.label_smoothing must be in [0, 1), got {label_smoothing}")
        for name, v in (("val_beam_size", val_beam_size), ("beam_size", beam_size)):
            if not isinstance(v, int) or v < 1:
                raise ConfigError(f"model.{name} must be a positive integer, got {v!r}")
        self.save_hparams_with_net(net)
        self.net = build_net(net, src_vocab_size=src_vocab_size, tgt_vocab_size=tgt_vocab_size, pad_id=pad_id,
                             bos_id=bos_id, eos_id=eos_id)
        self.pad_id, self.bos_id, self.eos_id = pad_id, bos_id, eos_id
        # a net that takes ``targets`` (and pads as this model does) computes the loss itself
        # (Seq2Seq: generator and loss fused for large vocabularies)
        self._net_takes_targets = net_takes(self.net, "targets") and getattr(self.net, "pad_id", None) == pad_id
        self.teacher_forcing, self.label_smoothing = teacher_forcing, label_smoothing
        self.val_beam_size, self.beam_size, self.len_penalty = val_beam_size, beam_size, len_penalty
        self.max_decode_len, self.keep_attention = max_decode_len, keep_attention
        self.eval_loss = torch.nn.ModuleDict({s: MeanMetric() for s in ("val", "test")})
        self.exact = torch.nn.ModuleDict({s: MeanMetric() for s in ("val", "test")})
        self.bleu = torch.nn.ModuleDict({s: SacreBLEUScore(tokenize=bleu_tokenize, lowercase=lowercase_bleu)
                                         for s in ("val", "test")})
        self.detokenize: Callable[[list[int]], str] | None = None
        self.test_outputs: list[dict[str, Any]] = []
        self.val_outputs: list[dict[str, Any]] = []

    def forward(self, src: Tensor, tgt_in: Tensor) -> Tensor:
        return self.net(src, tgt_in)

    # -- decoding -------------------------------------------------------------------------------
    def translate_ids(self, src: Tensor, beam_size: int | None = None,
                      return_attention: bool = False) -> tuple[Tensor, Tensor, Tensor | None]:
        """Decode a padded source batch: greedy for ``beam_size=1``, else beam search."""
        k = beam_size or self.beam_size
        if k == 1:
            return self.net.greedy(src, self.max_decode_len, return_attention)
        return self.net.beam_search(src, k, self.max_decode_len, self.len_penalty, return_attention=return_attention)

    def _detok(self) -> Callable[[list[int]], str]:
        if self.detokenize is not None:
            return self.detokenize
        dm = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        if dm is None or not hasattr(dm, "decode_target"):
            raise ConfigError("Translator needs a detokenizer: train with a TranslationDataModule or set model.detokenize")
        return dm.decode_target

    # -- steps ----------------------------------------------------------------------------------
    def _loss(self, logits: Tensor, target: Tensor, smoothing: float) -> Tensor:
        return F.cross_entropy(logits.float().reshape(-1, logits.size(-1)), target.reshape(-1),
                               ignore_index=self.pad_id, label_smoothing=smoothing)

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor | None:
        tgt = batch["tgt"]
        with self.weights_cast_once():  # the decoder steps through the target: one cast of its weights
            if self._net_takes_targets:
                loss = self.net(batch["src"], tgt[:, :-1], teacher_forcing=self.teacher_forcing,
                                src_lengths=batch.get("src_lengths"), targets=tgt[:, 1:],
                                label_smoothing=self.label_smoothing)
            else:
                logits = self.net(batch["src"], tgt[:, :-1], teacher_forcing=self.teacher_forcing,
                                  src_lengths=batch.get("src_lengths"))
                loss = self._loss(logits, tgt[:, 1:], self.label_smoothing)
        self.log("train/loss", loss, prog_bar=False, on_step=True, on_epoch=True, batch_size=tgt.size(0))
        return self.finite_or_skip(loss)

    def _eval_step(self, stage: str, batch: dict[str, Any]) -> None:
        src, tgt = batch["src"], batch["tgt"]
        keep = stage == "test" and len(self.test_outputs) < self.keep_attention
        with self.weights_cast_once():  # teacher-forced pass and decoding: the weights cast once
            logits = self.net(src, tgt[:, :-1], src_lengths=batch.get("src_lengths"))
            n_tokens = int((tgt[:, 1:] != self.pad_id).sum())
            self.eval_loss[stage].update(self._loss(logits, tgt[:, 1:], 0.0), n_tokens)
            tokens, scores, attn = self.translate_ids(src, 1 if stage == "val" else self.beam_size, return_attention=keep)
        detok = self._detok()
        hyps = [detok(row) for row in tokens.tolist()]
        refs = list(batch["tgt_text"])
        self.bleu[stage].update(hyps, [[r] for r in refs])
        self.exact[stage].update(torch.tensor([float(h == r) for h, r in zip(hyps, refs)], device=self.device))
        outputs = self.test_outputs if stage == "test" else self.val_outputs
        index = batch["index"].tolist() if "index" in batch else [None] * len(hyps)
        for i, (s, r, h) in enumerate(zip(batch["src_text"], refs, hyps)):
            item: dict[str, Any] = {"src": s, "ref": r, "hyp": h, "score": float(scores[i]), "index": index[i]}
            if keep and attn is not None and i < self.keep_attention:
                item.update(src_ids=src[i][src[i] != self.pad_id].tolist(), hyp_ids=tokens[i].tolist(),
                            attention=attn[i].float().cpu())
            outputs.append(item)

    def _log_eval(self, stage: str) -> None:
        loss = self.eval_loss[stage].compute()
        self.log(f"{stage}/loss", loss, prog_bar=True)
        self.log(f"{stage}/ppl", torch.exp(loss.clamp(max=50)))
        self.log(f"{stage}/bleu", self.bleu[stage].compute() * 100.0, prog_bar=True)
        self.log(f"{stage}/exact_match", self.exact[stage].compute())
        for m in (self.eval_loss[stage], self.bleu[stage], self.exact[stage]):
            m.reset()

    def on_validation_epoch_start(self) -> None:
        self.val_outputs = []

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._eval_step("val", batch)

    def on_validation_epoch_end(self) -> None:
        self._log_eval("val")

    def on_test_epoch_start(self) -> None:
        self.test_outputs = []

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._eval_step("test", batch)

    def on_test_epoch_end(self) -> None:
        self._log_eval("test")
        dist = torch.distributed
        if self._trainer is not None and self.trainer.world_size > 1 and dist.is_available() and dist.is_initialized():
            parts: list[Any] = [None] * self.trainer.world_size  # every rank decoded its own shard: collect them all
            dist.all_gather_object(parts, self.test_outputs)
            self.test_outputs = [item for part in parts for item in part]
