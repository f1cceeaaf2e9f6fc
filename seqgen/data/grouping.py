"""A training loader that yields groups of K consecutive batches (steps per execution).

``group_loader(loader, k)`` turns a ``DataLoader`` into one of a subclass that yields lists of
``k`` batches of the loader's own iterator: the same batches in the same order (the last group of
an epoch may be shorter), and ``len`` counts groups. It stays a ``DataLoader`` with its dataset,
sampler and collate function, so Lightning still injects its distributed sampler (it rebuilds a
loader of this class, whose group size is a class attribute) and sets the sampler's epoch.

``limit`` keeps only the first ``limit`` batches of each epoch, before grouping: the meaning of an
integer ``trainer.limit_train_batches`` with K=1, which ``seqgen.train`` passes here.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from typing import Any

from torch.utils.data import DataLoader


def _gathers(loader: DataLoader) -> bool:
    """Whether a group's batches can be read with one ``gather_examples`` of the dataset (as
    ``TensorPairs`` has): a single-process loader batching a map-style dataset, no pinned memory."""
    return (loader.num_workers == 0 and loader.batch_sampler is not None and not loader.pin_memory
            and callable(getattr(loader.dataset, "gather_examples", None)))


def _gathered_batches(loader: DataLoader) -> Iterator[Any]:
    """The loader's batches, in its order, read a group at a time: the indices of ``group``
    batches from its batch sampler, one ``dataset.gather_examples`` of all of them (one indexing of the
    in-memory tensors instead of one per batch, and no DataLoader step per batch), split back
    into the batches, each through the loader's ``collate_fn`` as it is served, or all at once through its
    ``collate_group(parts, sizes)`` when it has one (the stochastic binarisation). The same batches
    as the loader's own iterator (tests/test_execution.py); the epoch starts as the loader's iterator
    starts it (``iter(batch_sampler)`` or the sampler's ``order()``: its epoch and resume bookkeeping)."""
    collate_group = getattr(loader.collate_fn, "collate_group", None)
    for sizes, index in _group_indices(loader):
        parts = loader.dataset.gather_examples(index)
        if collate_group is not None:  # the collate function's own way with a group (one kernel, not K)
            yield from collate_group(parts, sizes)
            continue
        split = [p.split(sizes) for p in parts]
        for j in range(len(sizes)):
            yield loader.collate_fn(tuple(s[j] for s in split))


def _group_indices(loader: DataLoader) -> Iterator[tuple[list[int], Any]]:
    """(batch sizes, their indices as one int64 tensor) for each group of the loader's batches. A
    torch ``BatchSampler`` over a sampler with an ``order()`` tensor (``EpochShuffle``) is cut into
    batches arithmetically, as ``BatchSampler`` cuts it (``drop_last`` too): no Python list per batch
    (about 0.15 ms an epoch for the digits VAE's 41 batches); any other batch sampler is read batch by batch."""
    import numpy as np
    import torch
    from torch.utils.data import BatchSampler

    batch_sampler = loader.batch_sampler
    order = getattr(batch_sampler, "sampler", None) if type(batch_sampler) is BatchSampler else None
    order = getattr(order, "order", None)
    if callable(order):
        index, size = order(), batch_sampler.batch_size
        n = len(index) // size * size if batch_sampler.drop_last else len(index)
        for start in range(0, n, size * loader.group):
            stop = min(start + size * loader.group, n)
            sizes = [size] * ((stop - start) // size) + ([(stop - start) % size] if (stop - start) % size else [])
            yield sizes, index[start:stop]
        return
    indices = iter(batch_sampler)
    while chunk := list(itertools.islice(indices, loader.group)):
        sizes = [len(b) for b in chunk]
        flat = np.fromiter(itertools.chain.from_iterable(chunk), dtype=np.int64, count=sum(sizes))
        yield sizes, torch.from_numpy(flat)


def _grouped_iter(self: DataLoader) -> Iterator[list[Any]]:
    batches = _gathered_batches(self) if _gathers(self) else type(self)._base_iter(self)
    if self.limit is not None:
        # a resumed epoch's loader starts after the batches already trained on: only the rest of the limit
        batches = itertools.islice(batches, max(self.limit - self.resumed_at(), 0))
    while chunk := list(itertools.islice(batches, self.group)):
        yield chunk


def _batches(self: DataLoader) -> int:
    """Batches (not groups) per epoch."""
    n = type(self)._base_len(self)  # TypeError for an unsized iterable dataset, as DataLoader's own
    return n if self.limit is None else min(n, self.limit)


def _grouped_len(self: DataLoader) -> int:
    return math.ceil(_batches(self) / self.group)


def _zero() -> int:
    return 0


def group_loader(loader: DataLoader, k: int, limit: int | None = None, resumed_at: Any = None) -> DataLoader:
    """``loader``, its batches served ``k`` at a time (``k=1`` and no limit: unchanged). ``resumed_at()``:
    how many of the epoch's batches a mid-epoch resume skips (the loader's dataset skips them; the
    limit counts them)."""
    if k == 1 and limit is None:
        return loader
    if not isinstance(loader, DataLoader):
        raise TypeError(f"steps_per_execution needs a torch DataLoader as the training loader, got {type(loader).__name__}")
    base = type(loader)
    if getattr(base, "_seqgen_grouped", False):
        raise TypeError("this loader is grouped already")
    # a subclass adding only class attributes and methods: the instance's class can be swapped in place
    cls = type(f"Grouped{base.__name__}", (base,), {
        "group": int(k), "limit": limit, "resumed_at": staticmethod(resumed_at or _zero), "_seqgen_grouped": True,
        "_base_iter": base.__iter__,
        "_base_len": base.__len__, "__iter__": _grouped_iter, "__len__": _grouped_len,
        "batches_per_epoch": _batches, "__module__": __name__})
    loader.__class__ = cls
    return loader
