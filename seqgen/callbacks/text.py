"""Text samples from language models, printed and written to ``<run>/samples/`` each epoch."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_only

from seqgen.contracts import Generates, HasTokenizer
from seqgen.errors import ConfigError
from seqgen.utils import check_positive


class TextSamples(L.Callback):
    """Sample ``num_samples`` continuations of ``prompt`` after every validation (and after test).

    Sampling uses its own generator seeded by ``seed + epoch``, so it never moves the global RNG
    (training with and without this callback, or resumed, stays identical).
    """

    def __init__(self, prompt: str = "\n", max_new_tokens: int = 300, temperature: float = 0.8,
                 top_k: int | None = None, top_p: float | None = None, num_samples: int = 2,
                 every_n_epochs: int = 1, seed: int = 0, dirname: str = "samples", echo: bool = True):
        for name, v in (("max_new_tokens", max_new_tokens), ("num_samples", num_samples), ("every_n_epochs", every_n_epochs)):
            check_positive(name, v)
        if not temperature > 0:
            raise ConfigError(f"temperature must be a positive number, got {temperature!r}")
        self.prompt, self.max_new_tokens, self.temperature = prompt, max_new_tokens, temperature
        self.top_k, self.top_p, self.num_samples = top_k, top_p, num_samples
        self.every_n_epochs, self.seed, self.dirname, self.echo = every_n_epochs, seed, dirname, echo

    def _out_dir(self, trainer: L.Trainer) -> Path:
        return Path(trainer.default_root_dir) / self.dirname

    def sample(self, trainer: L.Trainer, pl_module: L.LightningModule, tag: str) -> list[str]:
        dm = trainer.datamodule
        if not isinstance(dm, HasTokenizer) or dm.tokenizer is None or not isinstance(pl_module, Generates):
            return []
        tokenizer = dm.tokenizer
        ids = tokenizer.encode(self.prompt)
        if not ids:
            return []
        prompt = torch.tensor([ids] * self.num_samples, dtype=torch.long, device=pl_module.device)
        gen = torch.Generator(device=pl_module.device).manual_seed(self.seed + trainer.current_epoch)
        out = pl_module.generate(prompt, self.max_new_tokens, self.temperature, self.top_k, self.top_p, generator=gen)
        texts = [self.prompt + tokenizer.decode(row.tolist()) for row in out]
        folder = self._out_dir(trainer)
        folder.mkdir(parents=True, exist_ok=True)
        sep = "\n" + "-" * 60 + "\n"
        (folder / f"{tag}.txt").write_text(sep.join(texts) + "\n", encoding="utf-8")
        if self.echo:
            from rich.console import Console
            from rich.panel import Panel

            Console().print(Panel(texts[0][:2000], title=f"sample ({tag}, T={self.temperature})", expand=False))
        return texts

    @rank_zero_only
    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or (trainer.current_epoch + 1) % self.every_n_epochs:
            return
        self.sample(trainer, pl_module, f"epoch_{trainer.current_epoch:03d}")

    @rank_zero_only
    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.sample(trainer, pl_module, "final")

    def state_dict(self) -> dict[str, Any]:
        return {}
