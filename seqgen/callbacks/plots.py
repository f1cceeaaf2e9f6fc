"""Loss curves as a PNG in ``<run>/plots/`` when fitting ends (rank 0 only)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_only

from seqgen.contracts import HasClasses, HasConfusion, HasNodeEmbedding


class LossCurves(L.Callback):
    """Records the training loss every ``every_n_steps`` and each validation metric named in
    ``monitor`` per epoch; writes ``plots/loss.png`` (and ``plots/loss.csv``) at the end of fit.
    The history travels in checkpoints, so a resumed run plots its whole curve."""

    def __init__(self, train_key: str = "train/loss", val_keys: tuple[str, ...] = ("val/loss",), every_n_steps: int = 1,
                 dirname: str = "plots"):
        self.train_key, self.val_keys, self.every_n_steps, self.dirname = train_key, tuple(val_keys), every_n_steps, dirname
        self.train: list[tuple[int, float]] = []
        self.val: dict[str, list[tuple[int, float]]] = {k: [] for k in self.val_keys}
        self._pending: list[tuple[int, torch.Tensor]] = []  # on the device until the epoch ends (no sync per step)
        self._last_step = 0  # the step of the latest point

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        step = trainer.global_step
        # a point every every_n_steps optimiser steps (a step with steps per execution advances K of them)
        if step // self.every_n_steps <= self._last_step // self.every_n_steps:
            return
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if isinstance(loss, torch.Tensor):
            self._pending.append((step, loss.detach().float().reshape(())))
            self._last_step = step

    def _flush(self) -> None:
        """The pending losses as numbers: one transfer for all of them."""
        if self._pending:
            values = torch.stack([v for _, v in self._pending]).cpu().tolist()
            self.train.extend((s, v) for (s, _), v in zip(self._pending, values))
            self._pending.clear()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._flush()

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # on_validation_end runs after the LightningModule's on_validation_epoch_end has logged
        # this epoch's metrics (callbacks' epoch-end hooks run before the module's)
        if trainer.sanity_checking:
            return
        for k in self.val_keys:
            v = trainer.callback_metrics.get(k)
            if v is not None:
                self.val[k].append((trainer.global_step, float(v)))

    def state_dict(self) -> dict[str, Any]:
        self._flush()
        return {"train": list(self.train), "val": {k: list(v) for k, v in self.val.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.train = [tuple(x) for x in state.get("train", [])]
        self._last_step = int(self.train[-1][0]) if self.train else 0
        self.val.update({k: [tuple(x) for x in v] for k, v in state.get("val", {}).items()})

    @rank_zero_only
    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._flush()
        if not self.train and not any(self.val.values()):
            return
        folder = Path(trainer.default_root_dir) / self.dirname
        folder.mkdir(parents=True, exist_ok=True)
        write_curves(folder / "loss.png", self.train, self.val, self.train_key)
        with open(folder / "loss.csv", "w") as f:
            f.write("series,step,value\n")
            for s, v in self.train:
                f.write(f"{self.train_key},{s},{v}\n")
            for k, pts in self.val.items():
                for s, v in pts:
                    f.write(f"{k},{s},{v}\n")


def write_curves(path: Path, train: list[tuple[int, float]], val: dict[str, list[tuple[int, float]]], train_label: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    if train:
        steps, vals = zip(*train)
        ax.plot(steps, vals, lw=0.8, alpha=0.6, label=train_label)
        if len(vals) >= 20:  # moving average so the trend is visible through the noise
            k = max(5, len(vals) // 50)
            kernel = torch.ones(k) / k
            smooth = torch.nn.functional.conv1d(torch.tensor(vals).view(1, 1, -1), kernel.view(1, 1, -1)).view(-1)
            ax.plot(steps[k - 1 :], smooth.tolist(), lw=1.5, label=f"{train_label} (avg {k})")
    for key, pts in val.items():
        if pts:
            s, v = zip(*pts)
            ax.plot(s, v, "o-", lw=1.5, label=key)
    ax.set_xlabel("step")
    ax.set_ylabel("loss (nats per token / example)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


class ConfusionMatrixPlot(L.Callback):
    """After test: ``plots/confusion.png`` (row-normalised) from a classifier's ``test_confusion``,
    and ``plots/misclassified.png``, a grid of test images it got wrong (true -> predicted)."""

    def __init__(self, dirname: str = "plots"):
        self.dirname = dirname

    @rank_zero_only
    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not isinstance(pl_module, HasConfusion) or pl_module.test_confusion is None:
            return
        cm = pl_module.test_confusion
        dm = trainer.datamodule
        classes = (dm.classes if isinstance(dm, HasClasses) else None) or [str(i) for i in range(cm.size(0))]
        folder = Path(trainer.default_root_dir) / self.dirname
        folder.mkdir(parents=True, exist_ok=True)
        write_confusion(folder / "confusion.png", cm, classes)
        mistakes = pl_module.test_mistakes
        if mistakes:
            write_mistakes(folder / "misclassified.png", mistakes, classes)


def write_mistakes(path: Path, mistakes: list[tuple[torch.Tensor, int, int]], classes: list[str]) -> None:
    """A grid of misclassified images, each captioned ``true -> predicted``: the tiles are composed
    into one picture drawn on one axes (a subplot per image spent over 2 s of matplotlib layout on a
    36-image grid, at the end of every classifier's test)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(mistakes)
    cols = min(6, n)
    rows = (n + cols - 1) // cols
    h = max(int(img.size(1)) for img, _, _ in mistakes)
    w = max(int(img.size(2)) for img, _, _ in mistakes)
    gap, caption = max(2, w // 8), max(4, h // 3)  # pixels between tiles, and above each for its caption
    canvas = torch.ones(rows * (h + caption), cols * (w + gap), 3)
    captions = []  # (x, y, text) of each tile's caption, in the canvas's pixels
    for k, (img, true, pred) in enumerate(mistakes):
        img = img.detach().float().cpu()
        img = (img - img.min()) / (img.max() - img.min()).clamp_min(1e-8)  # undo normalisation for display
        img = img.expand(3, -1, -1) if img.size(0) == 1 else img[:3]
        r, c = divmod(k, cols)
        top, left = r * (h + caption), c * (w + gap) + gap // 2
        canvas[top + caption: top + caption + img.size(1), left: left + img.size(2)] = img.permute(1, 2, 0)
        captions.append((left + w / 2, top + caption * 0.55, f"{classes[true]} -> {classes[pred]}"))
    fig, ax = plt.subplots(figsize=(1.6 * cols, 1.8 * rows), dpi=100)
    ax.imshow(canvas.numpy(), interpolation="nearest")
    ax.axis("off")
    for x, y, text in captions:
        ax.text(x, y, text, ha="center", va="center", fontsize=7, color="darkred")
    ax.set_title("misclassified test images (true -> predicted)", fontsize=9)
    fig.savefig(path, bbox_inches="tight")
    plt.close(fig)


def write_confusion(path: Path, cm: torch.Tensor, classes: list[str]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cm = cm.double()
    norm = cm / cm.sum(1, keepdim=True).clamp_min(1)
    n = cm.size(0)
    fig, ax = plt.subplots(figsize=(1 + 0.5 * n, 1 + 0.5 * n), dpi=100)
    ax.imshow(norm.numpy(), cmap="Blues", vmin=0, vmax=1)
    for i in range(n):
        for j in range(n):
            if cm[i, j] > 0:
                ax.text(j, i, int(cm[i, j]), ha="center", va="center", fontsize=7,
                        color="white" if norm[i, j] > 0.5 else "black")
    ax.set_xticks(range(n), classes, rotation=45 if max(map(len, classes)) > 2 else 0)
    ax.set_yticks(range(n), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    acc = float(cm.diag().sum() / cm.sum().clamp_min(1))
    ax.set_title(f"test confusion (accuracy {acc:.4f})")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


class NodeEmbeddingPlot(L.Callback):
    """After test: ``plots/embedding.png``, every node of the graph at its last hidden
    representation (its first two principal components when wider than 2), coloured by its true
    class; the labelled training nodes are drawn large with a black edge."""

    def __init__(self, dirname: str = "plots"):
        self.dirname = dirname

    @rank_zero_only
    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not isinstance(pl_module, HasNodeEmbedding) or pl_module.test_embedding is None:
            return
        dm = trainer.datamodule
        hidden, labels, train_mask = pl_module.test_embedding
        classes = (dm.classes if isinstance(dm, HasClasses) else None) or [str(i) for i in range(int(labels.max()) + 1)]
        folder = Path(trainer.default_root_dir) / self.dirname
        folder.mkdir(parents=True, exist_ok=True)
        write_embedding(folder / "embedding.png", hidden, labels, train_mask, classes)


def planar(hidden: torch.Tensor) -> tuple[torch.Tensor, str]:
    """(N, 2) coordinates of (N, d) points: as they are when d <= 2, else the top two principal components."""
    if hidden.size(1) <= 2:
        return torch.nn.functional.pad(hidden, (0, 2 - hidden.size(1))), "hidden units"
    centred = hidden - hidden.mean(0)
    _, _, v = torch.linalg.svd(centred, full_matrices=False)
    return centred @ v[:2].T, "first two principal components"


def write_embedding(path: Path, hidden: torch.Tensor, labels: torch.Tensor, train_mask: torch.Tensor,
                    classes: list[str]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xy, axes_name = planar(hidden)
    fig, ax = plt.subplots(figsize=(5, 4.5), dpi=110)
    cmap = plt.get_cmap("tab10")
    for c, name in enumerate(classes):
        sel = labels == c
        ax.scatter(xy[sel, 0], xy[sel, 1], s=18, color=cmap(c % 10), label=name, alpha=0.8)
        lab = sel & train_mask
        ax.scatter(xy[lab, 0], xy[lab, 1], s=90, color=cmap(c % 10), edgecolors="black", linewidths=1.5)
    ax.set_title(f"node embedding ({axes_name}); large: labelled", fontsize=9)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
