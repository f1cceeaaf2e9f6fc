"""Seeded splits and subsamples shared by all data modules (one helper each)."""

from __future__ import annotations

import torch


def stratified_split(y: torch.Tensor, fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices (keep, held_out): ``fraction`` of each class held out, chosen with ``seed``."""
    gen = torch.Generator().manual_seed(seed)
    keep, held = [], []
    for c in torch.unique(y):
        idx = torch.nonzero(y == c).view(-1)
        idx = idx[torch.randperm(len(idx), generator=gen)]
        k = int(round(len(idx) * fraction))
        held.append(idx[:k])
        keep.append(idx[k:])
    return torch.cat(keep).sort().values, torch.cat(held).sort().values


def subsample(n: int, size: int | None, seed: int, labels: torch.Tensor | None = None) -> list[int] | None:
    """Sorted indices of ``size`` of ``n`` examples chosen with ``seed`` (stratified by ``labels``
    when given: each class keeps its share), or None when ``size`` is None or not below ``n``
    (keep everything). The one ``train_size`` rule of every data module."""
    if size is None or size >= n:
        return None
    if labels is not None:
        return stratified_split(labels, size / n, seed)[1].tolist()
    return sorted(torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:size].tolist())
