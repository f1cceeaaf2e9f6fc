"""Image grids for generative models: PNG files in ``<run>/samples/`` and the loggers that take images.

A LightningModule that can be looked at defines ``visuals(stage) -> {name: (images, nrow)}``
with ``images`` a float batch ``(N, C, H, W)`` in [0, 1]; :class:`ImageGrids` tiles each into a
grid after every ``every_n_epochs``-th validation and after the test, as
``samples/<name>_epoch<NNN>.png`` (and ``samples/<name>_test.png``). Modules with a
``latent_scatter()`` (a 2-D VAE) also get ``plots/latent.png``: the codes coloured by label.
"""

from __future__ import annotations

from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_only
from torch import Tensor

from seqgen.contracts import HasLatentScatter, HasVisuals
from seqgen.utils import check_positive


def make_grid(images: Tensor, nrow: int = 8, padding: int = 2, scale: int = 1, pad_value: float = 1.0) -> Tensor:
    """Tile ``(N, C, H, W)`` images in [0, 1] into one ``(C, H', W')`` image, ``nrow`` per row,
    each enlarged ``scale`` times (nearest neighbour) and framed by ``padding`` pixels.
    ``H' = rows * (H * scale + padding) + padding``, ``W' = nrow * (W * scale + padding) + padding``."""
    if images.dim() != 4:
        raise ValueError(f"expected a (N, C, H, W) batch, got shape {tuple(images.shape)}")
    images = images.detach().float().clamp(0, 1).cpu()
    if scale > 1:
        images = images.repeat_interleave(scale, 2).repeat_interleave(scale, 3)
    n, c, h, w = images.shape
    ncol = max(1, min(nrow, n))
    rows = (n + ncol - 1) // ncol
    grid = torch.full((c, rows * (h + padding) + padding, ncol * (w + padding) + padding), pad_value)
    for i in range(n):
        r, k = divmod(i, ncol)
        top, left = padding + r * (h + padding), padding + k * (w + padding)
        grid[:, top:top + h, left:left + w] = images[i]
    return grid


def save_png(grid: Tensor, path: str | Path) -> Path:
    """Write a ``(C, H, W)`` image in [0, 1] (C = 1 or 3) as an 8-bit PNG."""
    from PIL import Image

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = (grid.clamp(0, 1) * 255).round().to(torch.uint8)
    if arr.size(0) == 1:
        Image.fromarray(arr[0].numpy(), mode="L").save(path)
    else:
        Image.fromarray(arr[:3].permute(1, 2, 0).contiguous().numpy(), mode="RGB").save(path)
    return path


def default_scale(h: int) -> int:
    """Enlarge small images so a grid cell is at least ~28 pixels (8x8 digits: x4)."""
    return max(1, -(-28 // h)) if h < 28 else 1


def log_image(trainer: L.Trainer, key: str, grid: Tensor, path: Path, step: int) -> None:
    """Send a grid to every logger that takes images: TensorBoard (``add_image``), Weights & Biases
    (``log_image``) and MLflow (the PNG as an artifact of the run)."""
    from lightning.pytorch.loggers import (  # none imports its package
        MLFlowLogger,
        TensorBoardLogger,
        WandbLogger,
    )

    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger):
            logger.experiment.add_image(key, grid, global_step=step)
        elif isinstance(logger, WandbLogger):
            logger.log_image(key=key, images=[str(path)], step=step)
        elif isinstance(logger, MLFlowLogger):
            logger.experiment.log_artifact(logger.run_id, str(path), artifact_path=key.rsplit("/", 1)[0])


class ImageGrids(L.Callback):
    def __init__(self, every_n_epochs: int = 1, dirname: str = "samples", scale: int | None = None):
        check_positive("every_n_epochs", every_n_epochs)
        self.every_n_epochs, self.dirname, self.scale = every_n_epochs, dirname, scale

    def _write(self, trainer: L.Trainer, pl_module: L.LightningModule, tag: str, step: int) -> None:
        if not isinstance(pl_module, HasVisuals):
            return
        visuals = pl_module.visuals
        was_training = pl_module.training
        pl_module.eval()
        try:
            pictures = visuals("test" if tag == "test" else "val")
        finally:
            pl_module.train(was_training)
        folder = Path(trainer.default_root_dir) / self.dirname
        for name, (images, nrow) in pictures.items():
            scale = self.scale or default_scale(images.shape[-2])
            grid = make_grid(images, nrow=nrow, scale=scale)
            path = folder / f"{name}_{tag}.png"
            save_png(grid, path)
            log_image(trainer, f"{self.dirname}/{name}", grid, path, step)
        points = pl_module.latent_scatter() if isinstance(pl_module, HasLatentScatter) else None
        if points is not None:
            write_scatter(Path(trainer.default_root_dir) / "plots" / "latent.png", *points)

    @rank_zero_only
    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or (trainer.current_epoch + 1) % self.every_n_epochs:
            return
        self._write(trainer, pl_module, f"epoch{trainer.current_epoch:03d}", trainer.global_step)

    @rank_zero_only
    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._write(trainer, pl_module, "test", trainer.global_step)


def write_scatter(path: Path, z: Tensor, labels: Tensor, title: str = "latent codes (posterior means)") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(5, 5))
    pts = ax.scatter(z[:, 0].numpy(), z[:, 1].numpy(), c=labels.numpy(), cmap="tab10", s=6)
    fig.colorbar(pts, ax=ax, label="label")
    ax.set_xlabel("z1")
    ax.set_ylabel("z2")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
