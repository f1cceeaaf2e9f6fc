"""A training loader that yields groups of K consecutive batches (steps per execution).

``group_loader(loader, k)`` turns a ``DataLoader`` into one of a subclass that yields lists of
``k`` batches of the loader's own iterator: the same batches in the same order (the last group of
an epoch may be shorter), and ``len`` counts groups. It stays a ``DataLoader`` with its dataset,
sampler and collate function, so Lightning still injects its distributed sampler (it rebuilds a
loader of this class, whose group size is a class attribute) and sets the sampler's epoch.

``limit`` keeps only the first ``limit`` batches of each epoch, before grouping: the meaning of an
integer ``trainer.limit_train_batches`` with K=1, which ``seqgen.train`` passes here.

``in_order_loader(loader)`` is the evaluation counterpart for an in-memory dataset read in order:
each batch one ``gather_examples`` of its index range, without a DataLoader iterator.
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


_IN_ORDER_CLASSES: dict[type, type] = {}


def _in_order_iter(self: DataLoader) -> Iterator[Any]:
    import torch
    from torch.utils.data import BatchSampler, SequentialSampler

    if not (_gathers(self) and type(self.sampler) is SequentialSampler and type(self.batch_sampler) is BatchSampler):
        return type(self)._base_iter(self)  # another sampler (Lightning's distributed one under DDP): torch's iterator
    # the base seed torch's iterator draws as it starts: the global random stream advances as it would
    torch.empty((), dtype=torch.int64).random_(generator=self.generator)
    return _in_order_batches(self, len(self.sampler), self.batch_size, self.drop_last)


def _in_order_batches(loader: DataLoader, n: int, size: int, drop_last: bool) -> Iterator[Any]:
    import torch

    stop = n // size * size if drop_last else n
    for start in range(0, stop, size):
        yield loader.collate_fn(loader.dataset.gather_examples(torch.arange(start, min(start + size, stop))))


def in_order_loader(loader: DataLoader) -> DataLoader:
    """``loader`` (an evaluation loader: ``shuffle=False``), its batches read straight from the dataset
    when it reads an in-memory dataset in order (``gather_examples``, one process, torch's
    ``SequentialSampler`` and ``BatchSampler``): ``gather_examples`` of ``arange(start, stop)`` for each
    batch through the collate function -- the batches torch's iterator gives (tests/test_execution.py),
    without its set-up at every pass and a Python list of indices a batch. Any other loader (Lightning
    rebuilds this one with its distributed sampler under DDP) is read by torch's iterator. The
    instance's class is swapped in place, to a subclass adding only ``__iter__``."""
    base = type(loader)
    if getattr(base, "_seqgen_in_order", False):
        return loader
    cls = _IN_ORDER_CLASSES.get(base)
    if cls is None:
        cls = _IN_ORDER_CLASSES[base] = type(f"InOrder{base.__name__}", (base,), {
            "_seqgen_in_order": True, "_base_iter": base.__iter__, "__iter__": _in_order_iter, "__module__": __name__})
    loader.__class__ = cls
    return loader
