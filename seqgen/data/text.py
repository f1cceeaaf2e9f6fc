"""Batching for variable-length text: padding collate and length-bucketing samplers.

* :func:`pad_batch`: a list of id sequences -> ``(B, T)`` LongTensor padded with ``pad_id`` (0),
  plus lengths. Masks are ``tokens != pad_id``.
* :class:`PaddedRows`: the same padded batches gathered from one flat tensor of the sequences,
  for collate functions that batch a fixed set of sequences by index.
* :class:`BucketBatchSampler`: each epoch, a permutation seeded with ``seed`` and the epoch is cut
  into pools of ``batch_size * pool_factor`` examples, each pool sorted by length and cut into
  batches (of ``batch_size`` examples, or, with ``max_tokens``, of at most that many padded
  tokens), and the batch order shuffled. Every example is used exactly once per epoch; padding
  shrinks to a few percent. A resumed run sees the same batches (the order depends only on
  ``seed`` and the epoch).
* :func:`bucket_loader`: those batches, collated, as a ``DataLoader`` over an ``IterableDataset``
  that shards them across DDP ranks itself (training: rank ``r`` of ``w`` takes batches ``r, r + w,
  ...``, the shorter ranks padded by repeating batches so every rank steps equally; evaluation:
  every ``w``-th example of the length-sorted order, so each example is scored exactly once). Lightning
  cannot inject its distributed sampler into a custom batch sampler, and needs not: an iterable
  dataset is left alone.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from torch.utils.data import DataLoader, IterableDataset, Sampler

from seqgen.errors import ConfigError


def pad_batch(seqs: Sequence[Sequence[int]], pad_id: int = 0, max_len: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(tokens ``(B, T)``, lengths ``(B,)``); sequences longer than ``max_len`` are cut."""
    if max_len is not None:
        seqs = [s[:max_len] for s in seqs]
    sizes = [len(s) for s in seqs]
    width = max([1, *sizes])
    # one conversion of the padded lists (a tensor per sequence cost 20x more: 1.5 ms for 64 dates)
    out = torch.tensor([[*s, *([pad_id] * (width - n))] for s, n in zip(seqs, sizes)], dtype=torch.long)
    return out.reshape(len(seqs), width), torch.tensor(sizes, dtype=torch.long)


class PaddedRows:
    """Token sequences kept as one flat tensor, each batch padded from it: ``rows(idx)`` equals
    ``pad_batch([seqs[i] for i in idx], pad_id)[0]`` (the batch's own width, at least 1), built by a
    few tensor ops instead of padded Python lists converted at every batch (0.25 -> 0.07 ms a batch of
    128 dates). The memory is the tokens' own, not a table as wide as the longest sequence."""

    def __init__(self, seqs: Sequence[Sequence[int]], pad_id: int = 0):
        self.lengths = [len(s) for s in seqs]
        self.pad_id = pad_id
        self._flat = torch.tensor(list(itertools.chain.from_iterable(seqs)), dtype=torch.long)
        self._starts = torch.tensor([0, *itertools.accumulate(self.lengths)][:-1], dtype=torch.long)
        self._lengths = torch.tensor(self.lengths, dtype=torch.long)

    def __call__(self, idx: list[int]) -> torch.Tensor:
        lengths = self.lengths
        width = max(1, max((lengths[i] for i in idx), default=0))
        if not self._flat.numel():  # no tokens at all
            return torch.full((len(idx), width), self.pad_id, dtype=torch.long)
        rows = torch.as_tensor(idx, dtype=torch.long)
        cols = torch.arange(width)
        inside = cols < self._lengths[rows].unsqueeze(1)
        where = (self._starts[rows].unsqueeze(1) + cols).clamp_(max=self._flat.numel() - 1)
        return torch.where(inside, self._flat[where], self.pad_id)


class BucketBatchSampler(Sampler[list[int]]):
    def __init__(self, lengths: Sequence[int], batch_size: int, seed: int = 0, pool_factor: int = 50,
                 max_tokens: int | None = None, shuffle: bool = True):
        if not isinstance(batch_size, int) or batch_size <= 0:
            raise ConfigError(f"batch_size must be a positive integer, got {batch_size!r}")
        if max_tokens is not None and max_tokens < max(lengths, default=1):
            raise ConfigError(f"max_tokens={max_tokens} is smaller than the longest example ({max(lengths)} tokens)")
        self.lengths = torch.as_tensor(list(lengths), dtype=torch.long)
        self.batch_size, self.seed, self.pool_factor = batch_size, seed, pool_factor
        self.max_tokens, self.shuffle = max_tokens, shuffle
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _batches(self) -> list[list[int]]:
        n = len(self.lengths)
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        order = torch.randperm(n, generator=gen) if self.shuffle else torch.arange(n)
        pool = self.batch_size * self.pool_factor
        batches: list[list[int]] = []
        for start in range(0, n, pool):
            chunk = order[start:start + pool]
            chunk = chunk[torch.argsort(self.lengths[chunk], stable=True)].tolist()
            if self.max_tokens is None:
                batches += [chunk[i:i + self.batch_size] for i in range(0, len(chunk), self.batch_size)]
                continue
            cur: list[int] = []
            longest = 0
            for i in chunk:
                longest_next = max(longest, int(self.lengths[i]))
                if cur and (longest_next * (len(cur) + 1) > self.max_tokens or len(cur) >= self.batch_size):
                    batches.append(cur)
                    cur, longest_next = [], int(self.lengths[i])
                cur.append(i)
                longest = longest_next
            if cur:
                batches.append(cur)
        if self.shuffle:
            perm = torch.randperm(len(batches), generator=gen).tolist()
            batches = [batches[i] for i in perm]
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self._batches())

    def __len__(self) -> int:
        if self.max_tokens is None:
            pool = self.batch_size * self.pool_factor
            n = len(self.lengths)
            return sum(-(-min(pool, n - s) // self.batch_size) for s in range(0, n, pool))
        return len(self._batches())


class BucketedBatches(IterableDataset):
    """Collated bucketed batches for this rank; the epoch and the (rank, world) are read when an
    epoch starts (from the trainer), so shuffling follows ``seed + epoch`` on every rank alike."""

    def __init__(self, sampler: BucketBatchSampler, collate: Callable[[list[int]], Any],
                 rank_world: Callable[[], tuple[int, int]], epoch: Callable[[], int], pad_ranks: bool,
                 skip: Callable[[int], int] = lambda n: 0):
        super().__init__()
        self.skip = skip  # training batches a mid-epoch resume has already done
        self.sampler, self.collate, self.rank_world, self.epoch, self.pad_ranks = sampler, collate, rank_world, epoch, pad_ranks

    def batches(self) -> list[list[int]]:
        self.sampler.set_epoch(self.epoch())
        batches = list(self.sampler)
        rank, world = self.rank_world()
        if world <= 1:
            return batches
        if not self.pad_ranks:  # evaluation: every example once over all ranks, each rank at least one batch
            mine = [i for b in batches for i in b][rank::world]
            size = self.sampler.batch_size
            return [mine[i:i + size] for i in range(0, len(mine), size)]
        if len(batches) % world:  # pad with the first batches again (cyclically: fewer batches than ranks too)
            batches += [batches[i % len(batches)] for i in range(world - len(batches) % world)]
        return batches[rank::world]

    def __len__(self) -> int:
        return len(self.batches())

    def __iter__(self) -> Iterator[Any]:
        batches = self.batches()
        for b in batches[self.skip(len(batches)):]:
            yield self.collate(b)


def bucket_loader(lengths: Sequence[int], batch_size: int, collate: Callable[[list[int]], Any], trainer: Callable[[], Any],
                  seed: int = 0, shuffle: bool = True, max_tokens: int | None = None) -> DataLoader:
    """A loader of length-bucketed batches (see :class:`BucketBatchSampler`), DDP-sharded.
    ``trainer`` returns the data module's trainer (or None outside one)."""
    from seqgen.data.registry import as_collated
    from seqgen.data.sharding import current_epoch, rank_world, resume_skip

    sampler = BucketBatchSampler(lengths, batch_size, seed=seed, shuffle=shuffle, max_tokens=max_tokens)
    skip = (lambda n: resume_skip(trainer(), n)) if shuffle else (lambda n: 0)  # training loaders only
    ds = BucketedBatches(sampler, collate, lambda: rank_world(trainer()), lambda: current_epoch(trainer()), shuffle,
                         skip=skip)
    return DataLoader(ds, batch_size=None, num_workers=0, collate_fn=as_collated)
