"""Finding and safely loading checkpoints (``torch.load(weights_only=True)``, clear errors).

Used by ``seqgen.train`` (resume, ``init_from``), ``seqgen.generate`` and ``seqgen.translate``;
the LightningModules themselves never open files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from seqgen.errors import CheckpointError


def find_checkpoint(path: str | Path) -> Path:
    """A ``.ckpt`` file as given, or a run folder's ``checkpoints/last.ckpt`` (or ``last.ckpt``)."""
    p = Path(path)
    if p.is_dir():
        for cand in (p / "checkpoints" / "last.ckpt", p / "last.ckpt"):
            if cand.is_file():
                return cand
        raise CheckpointError(f"no checkpoints/last.ckpt in run folder {p}")
    if not p.is_file():
        raise CheckpointError(f"checkpoint not found: {p}")
    return p


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a Lightning checkpoint with ``weights_only=True``; truncated, corrupt or foreign
    files raise :class:`CheckpointError`."""
    p = find_checkpoint(path)
    try:
        ckpt = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:
        raise CheckpointError(f"{p}: not a readable checkpoint (truncated or corrupt?): {type(e).__name__}: {e}") from e
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise CheckpointError(f"{p}: not a Lightning checkpoint (no state_dict)")
    return ckpt


def module_from_checkpoint(cls: type, ckpt: dict[str, Any], device: str = "cpu") -> Any:
    """``cls`` rebuilt from a checkpoint already read by :func:`load_checkpoint`, as Lightning's
    ``load_from_checkpoint`` does it (the constructor called with the saved hyperparameters,
    ``on_load_checkpoint``, a strict ``load_state_dict``) but without reading the file a second
    time; returned in eval mode on ``device``."""
    model = cls(**ckpt["hyper_parameters"])
    model.on_load_checkpoint(ckpt)
    model.load_state_dict(ckpt["state_dict"])
    return model.to(device).eval()


def pretrained_state(ref: str) -> dict[str, Any]:
    """ImageNet weights from an optional library: ``torchvision:<model name>`` (e.g.
    ``torchvision:resnet18``, its default weights) or ``timm:<model name>``, downloaded and cached
    by that library. Only ``state_dict`` tensors are used."""
    lib, _, name = ref.partition(":")
    try:
        if lib == "torchvision":
            import torchvision.models as tvm

            return tvm.get_model(name, weights="DEFAULT").state_dict()
        if lib == "timm":
            import timm

            return timm.create_model(name, pretrained=True).state_dict()
    except ImportError as e:
        raise CheckpointError(f"init_from={ref}: {lib} is not installed ({e}); pip install {lib}, or start from a "
                              "seqgen run instead") from e
    raise CheckpointError(f"init_from={ref}: unknown source {lib!r}; use torchvision:<name>, timm:<name>, a .ckpt "
                          "file, a run folder or last:<task>")
