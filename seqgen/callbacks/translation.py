"""Translations shown and saved: a few validation sentences printed each epoch, every test
translation written, attention heat maps drawn (rank 0 only).

Files under the run folder: ``samples/val_epochNNN.txt`` (source / reference / output for the
first ``num_print`` validation sentences), ``translations/test.hyp.txt`` (one output per test
line, in test-file order), ``translations/test.tsv`` (source, reference, output, score) and
``plots/attention_<k>.png`` for the first test sentences of a model that attends.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.utilities import rank_zero_only

from seqgen.contracts import Tokenizer, Translates


def _pieces(tokenizer: Any, ids: list[int]) -> list[str]:
    """Token strings for axis labels: sentencepiece pieces, characters or words."""
    if isinstance(tokenizer, Tokenizer):
        return [tokenizer.piece(int(i)) for i in ids]
    return [str(i) for i in ids]


def write_attention(path: Path, weights: Any, src_labels: list[str], tgt_labels: list[str], title: str = "") -> None:
    """Heat map of attention ``weights (T, S)``: rows are output tokens, columns source tokens."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    w = weights[: len(tgt_labels), : len(src_labels)].numpy()
    fig, ax = plt.subplots(figsize=(1.5 + 0.32 * len(src_labels), 1.2 + 0.3 * len(tgt_labels)), dpi=100)
    ax.imshow(w, cmap="viridis", vmin=0.0, vmax=max(float(w.max()), 1e-6), aspect="auto")
    ax.set_xticks(range(len(src_labels)), src_labels, rotation=90, fontsize=8)
    ax.set_yticks(range(len(tgt_labels)), tgt_labels, fontsize=8)
    ax.set_xlabel("source")
    ax.set_ylabel("output")
    if title:
        ax.set_title(title, fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


class TranslationSamples(L.Callback):
    def __init__(self, num_print: int = 3, echo: bool = True, dirname: str = "samples"):
        self.num_print, self.echo, self.dirname = num_print, echo, dirname

    def _print(self, title: str, items: list[dict[str, Any]]) -> None:
        if not self.echo or not items:
            return
        from rich.console import Console
        from rich.panel import Panel

        body = "\n\n".join(f"[dim]src[/dim] {it['src']}\n[dim]ref[/dim] {it['ref']}\n[bold]out[/bold] {it['hyp']}"
                           for it in items)
        Console().print(Panel(body, title=title, expand=False))

    @rank_zero_only
    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        items = pl_module.val_outputs[: self.num_print] if isinstance(pl_module, Translates) else []
        if trainer.sanity_checking or not items:
            return
        folder = Path(trainer.default_root_dir) / self.dirname
        folder.mkdir(parents=True, exist_ok=True)
        text = "\n\n".join(f"src: {it['src']}\nref: {it['ref']}\nout: {it['hyp']}" for it in items)
        (folder / f"val_epoch{trainer.current_epoch:03d}.txt").write_text(text + "\n", encoding="utf-8")
        self._print(f"validation, epoch {trainer.current_epoch}", items)

    @rank_zero_only
    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        items = pl_module.test_outputs if isinstance(pl_module, Translates) else []
        if not items:
            return
        if all(it.get("index") is not None for it in items):  # batches come length-bucketed: restore file order
            items = sorted(items, key=lambda it: it["index"])
        root = Path(trainer.default_root_dir)
        folder = root / "translations"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "test.hyp.txt").write_text("".join(it["hyp"] + "\n" for it in items), encoding="utf-8")
        with open(folder / "test.tsv", "w", encoding="utf-8") as f:
            f.write("source\treference\toutput\tscore\n")
            for it in items:
                f.write("\t".join(x.replace("\t", " ") for x in (it["src"], it["ref"], it["hyp"])) + f"\t{it['score']:.4f}\n")
        self._print("test translations", items[: self.num_print])
        dm = trainer.datamodule
        plots = root / "plots"
        for k, it in enumerate(x for x in items if x.get("attention") is not None):
            plots.mkdir(parents=True, exist_ok=True)
            hyp_ids = it["hyp_ids"]
            if pl_module.eos_id in hyp_ids:
                hyp_ids = hyp_ids[: hyp_ids.index(pl_module.eos_id) + 1]
            src_labels = _pieces(getattr(dm, "src_tokenizer", None), it["src_ids"])
            tgt_labels = _pieces(getattr(dm, "tgt_tokenizer", None), hyp_ids)
            write_attention(plots / f"attention_{k}.png", it["attention"], src_labels, tgt_labels, it["hyp"][:80])
