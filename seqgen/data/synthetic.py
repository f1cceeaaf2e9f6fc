"""Long-range and tagging benchmarks generated on the fly with a seed (no download).

* Adding problem (Hochreiter & Schmidhuber 1997; the two-channel form of Le et al. 2015):
  channel 0 holds ``T`` numbers from U(0, 1), channel 1 marks two of them (one in each half);
  the target is their sum. Always answering 1 gives MSE = Var(U + U) = 1/6 ~ 0.167.
* Copy memory (Arjovsky, Shah & Bengio 2016): ten symbols from {1..8}, ``T - 1`` blanks (0),
  a delimiter (9), then ten blanks; the model must output blanks and then the ten symbols.
  Predicting blanks and then uniform symbols gives cross-entropy ``10 ln 8 / (T + 20)``.
* Look-ahead tagging (shows why bidirectionality helps): random tokens; the tag of position
  ``t`` is the token that follows it, ``x[t+1]`` (``0`` at the end) -- as in real tagging, where
  a word's role is decided by the words after it. A left-to-right network has not seen
  ``x[t+1]`` when it must answer and stays at chance (1/V); a bidirectional one reads it.

Training batches are drawn fresh every epoch from a generator seeded by (seed, epoch, rank),
so a resumed or distributed run sees exactly the data an uninterrupted one would; validation
and test sets are fixed.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, IterableDataset

from seqgen.data.registry import SeqgenDataModule
from seqgen.data.sharding import current_epoch, rank_world, resume_skip
from seqgen.errors import ConfigError
from seqgen.utils import check_positive

TASKS = ("adding", "copy", "tagging")


def adding_batch(n: int, seq_len: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    values = torch.rand(n, seq_len, generator=gen)
    half = seq_len // 2
    first = torch.randint(0, half, (n,), generator=gen)
    second = torch.randint(half, seq_len, (n,), generator=gen)
    marks = torch.zeros(n, seq_len)
    rows = torch.arange(n)
    marks[rows, first] = 1.0
    marks[rows, second] = 1.0
    x = torch.stack([values, marks], -1)
    y = (values[rows, first] + values[rows, second]).unsqueeze(-1)
    return x, y


def copy_batch(n: int, delay: int, gen: torch.Generator, symbols: int = 8, length: int = 10) -> tuple[torch.Tensor, torch.Tensor]:
    seq = torch.randint(1, symbols + 1, (n, length), generator=gen)
    total = delay + 2 * length
    x = torch.zeros(n, total, dtype=torch.long)
    x[:, :length] = seq
    x[:, length + delay - 1] = symbols + 1  # delimiter
    y = torch.zeros(n, total, dtype=torch.long)
    y[:, -length:] = seq
    return x, y


def tagging_batch(n: int, seq_len: int, gen: torch.Generator, vocab: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.randint(0, vocab, (n, seq_len), generator=gen)
    return x, torch.nn.functional.pad(x[:, 1:], (0, 1))


def baseline(task: str, seq_len: int, vocab: int = 8) -> float:
    """The loss of the best input-independent answer (what 'not solved' looks like)."""
    if task == "adding":
        return 1.0 / 6.0
    if task == "copy":
        return 10 * math.log(8) / (seq_len + 20)
    return math.log(vocab)


class _Fresh(IterableDataset):
    def __init__(self, make: Any, batch_size: int, batches: int, seed: int, epoch_fn: Any, rank: int, skip_fn: Any = None):
        super().__init__()
        self.make, self.batch_size, self.batches, self.seed, self.epoch_fn, self.rank = make, batch_size, batches, seed, epoch_fn, rank
        self.skip_fn = skip_fn or (lambda n: 0)

    def __len__(self) -> int:
        return self.batches

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        gen = torch.Generator().manual_seed((self.seed * 1_000_003 + int(self.epoch_fn())) * 997 + self.rank)
        skip = self.skip_fn(self.batches)  # a mid-epoch resume: regenerate and drop what was trained on
        for i in range(self.batches):
            batch = self.make(self.batch_size, gen)
            if i >= skip:
                yield batch


class _Batches(IterableDataset):
    """Ready-made batches, in order (no sampler of Lightning's can be put in front of it)."""

    def __init__(self, batches: list[tuple[torch.Tensor, torch.Tensor]]):
        super().__init__()
        self.batches = batches

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return iter(self.batches)


class SyntheticSequenceDataModule(SeqgenDataModule):
    """``task``: adding | copy | tagging. ``seq_len`` is T (for copy: the delay)."""

    def __init__(self, task: str = "adding", seq_len: int = 50, batch_size: int = 64, train_batches: int = 100,
                 val_size: int = 1000, test_size: int = 1000, vocab: int = 8, seed: int = 0):
        super().__init__()
        if task not in TASKS:
            raise ConfigError(f"unknown synthetic task {task!r}; available: {', '.join(TASKS)}")
        for name, v in (("data.seq_len", seq_len), ("data.batch_size", batch_size), ("data.train_batches", train_batches),
                        ("data.val_size", val_size), ("data.test_size", test_size), ("data.vocab", vocab)):
            check_positive(name, v)
        if task == "adding" and seq_len < 2:
            raise ConfigError("the adding problem needs seq_len >= 2")
        self.task, self.seq_len, self.batch_size, self.train_batches = task, seq_len, batch_size, train_batches
        self.val_size, self.test_size, self.vocab, self.seed = val_size, test_size, vocab, seed
        self.fixed: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    def make(self, n: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        if self.task == "adding":
            return adding_batch(n, self.seq_len, gen)
        if self.task == "copy":
            return copy_batch(n, self.seq_len, gen)
        return tagging_batch(n, self.seq_len, gen, self.vocab)

    @property
    def dims(self) -> dict[str, Any]:
        if self.task == "adding":
            return {"input_size": 2, "output_size": 1, "task_type": "regression"}
        vocab = 10 if self.task == "copy" else self.vocab
        return {"vocab_size": vocab, "output_size": vocab, "task_type": "tagging"}

    @property
    def baseline(self) -> float:
        return baseline(self.task, self.seq_len, self.vocab)

    def setup(self, stage: str | None = None) -> None:
        if not self.fixed:
            for i, (split, n) in enumerate((("val", self.val_size), ("test", self.test_size))):
                self.fixed[split] = self.make(n, torch.Generator().manual_seed(10_000 + 7919 * self.seed + i))

    def train_dataloader(self) -> DataLoader:
        rank, _ = rank_world(self.trainer)
        ds = _Fresh(self.make, self.batch_size, self.train_batches, self.seed, lambda: current_epoch(self.trainer), rank,
                    lambda n: resume_skip(self.trainer, n))
        return DataLoader(ds, batch_size=None, generator=torch.Generator().manual_seed(self.seed))

    def _fixed_loader(self, split: str) -> DataLoader:
        self.setup()
        x, y = self.fixed[split]
        rank, world = rank_world(self.trainer)
        x, y = x[rank::world], y[rank::world]
        batches = [(x[i : i + self.batch_size], y[i : i + self.batch_size]) for i in range(0, len(x), self.batch_size)]
        # iterable: this rank's share is already cut, and Lightning must not deal it out again with a
        # DistributedSampler (over a plain list of batches it did: under DDP half the set was evaluated)
        return DataLoader(_Batches(batches), batch_size=None)

    def val_dataloader(self) -> DataLoader:
        return self._fixed_loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._fixed_loader("test")
