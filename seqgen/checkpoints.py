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
        raise CheckpointError(f"{p}: {_why_unreadable(p, e)}") from None  # torch's text advises an unsafe load
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise CheckpointError(f"{p}: not a Lightning checkpoint (no state_dict)")
    return ckpt


def _why_unreadable(path: Path, error: Exception) -> str:
    """What is wrong with a file ``torch.load(weights_only=True)`` refused, in words a user can act
    on. Torch's own message goes on to suggest ``weights_only=False``, which would run whatever
    code the file holds: for a file of unknown origin that is the one thing not to do, so its
    text is never passed on."""
    import re

    with open(path, "rb") as f:
        head = f.read(4)
    size = path.stat().st_size
    if head != b"PK\x03\x04":  # torch.save writes a zip archive
        return (f"not a readable checkpoint (truncated or corrupt?): not a torch checkpoint archive ({size} bytes, "
                f"starting {head!r}); use a last.ckpt or epoch_*.ckpt written by a seqgen run")
    unsafe = re.search(r"Unsupported global: GLOBAL (\S+)", str(error))
    if unsafe:
        return (f"refused: it holds a Python object ({unsafe.group(1)}) that a weights-only load does not run. seqgen "
                "checkpoints hold tensors and plain data only, so this file was written by other code or altered "
                "after it was saved; it is not loaded")
    reason = re.search(r"WeightsUnpickler error: *\n*\s*([^\n]+)", str(error))
    first = str(error).strip().splitlines()[0] if str(error).strip() else ""
    detail = reason.group(1).strip() if reason else first if first and "weights_only" not in first else type(error).__name__
    return f"not a readable checkpoint (truncated or corrupt?): {size} bytes, {detail}"


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
