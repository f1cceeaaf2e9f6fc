"""No host sync in the hot loop: between two logging steps, a training step of every family turns
no tensor into a Python value (``.item()``, ``float()``, ``int()``, ``bool()``, ``.tolist()``) and
copies none to the host (``.cpu()``) --
on a GPU each would wait for the device. Counted on CPU by wrapping those methods for the length
of a run (``benchmarks/gpu_pass.sh`` counts them on a GPU with CUDA's sync debug mode)."""

from __future__ import annotations

import sys
import traceback

import lightning as L
import pytest
import torch

from conftest import make_cfg
from seqgen.train import run

METHODS = ("item", "__float__", "__int__", "__bool__", "tolist", "__index__", "cpu")
# host tensors by design: torch's packed-sequence bookkeeping (batch_sizes lives on the CPU) and the
# data side (loaders and collate functions build batches on the host, before the transfer)
CPU_BY_DESIGN = ("torch/nn/modules/rnn.py", "torch/nn/utils/rnn.py")
DATA_SIDE = ("/seqgen/data/", "/torch/utils/data/")
QUIET = ["callbacks.progress_bar=null", "logger=csv", "trainer.enable_model_summary=false", "trainer.num_sanity_val_steps=0",
         "trainer.max_epochs=1", "trainer.log_every_n_steps=1000", "test=false"]
FAMILIES = {  # at the recipe's K where an epoch of the limit holds several groups (the LM: 8), else 4
    "classifier": ["task=digits_mlp", "trainer.limit_train_batches=20", "steps_per_execution=4"],
    "classifier_k1": ["task=digits_mlp", "trainer.limit_train_batches=20", "steps_per_execution=1"],
    "cnn": ["task=digits_lenet", "trainer.limit_train_batches=16", "steps_per_execution=4"],
    "lm_tbptt": ["task=char_lm", "model.net.hidden_size=32", "model.net.num_layers=1", "model.net.embedding_dim=16",
                 "data.batch_size=8", "data.bptt=20", "trainer.limit_train_batches=20", "trainer.gradient_clip_val=1.0",
                 "callbacks.text_samples=null"],
    "vae": ["task=digits_vae", "trainer.limit_train_batches=20", "steps_per_execution=4"],
    "gan": ["task=digits_gan", "trainer.limit_train_batches=20", "model.eval_samples=100", "steps_per_execution=4"],
    "translator": ["task=dates_attn", "data.num_train=1400", "data.num_eval=50", "model.net.hidden_size=16",
                   "steps_per_execution=4"],
    # a recurrent text classifier (packed BiLSTM): its batches carry the token counts on the host
    "text_rnn": ["task=imdb_bilstm", "data=text_table", "data.train_file=texts.csv", "data.test_file=texts.csv",
                 "data.tokenizer.kind=word", "model.net.hidden_size=16", "model.net.embedding_dim=16",
                 "data.batch_size=16", "trainer.limit_train_batches=12"],
}


def _texts(folder) -> None:
    """A small labelled CSV of varied lengths for the text family."""
    import random

    rng = random.Random(7)
    words = {"pos": ["good", "great", "fine", "nice"], "neg": ["bad", "awful", "poor", "dull"]}
    rows = ["text,label"]
    for i in range(400):
        label = ("pos", "neg")[i % 2]
        rows.append(" ".join(rng.choice(words[label] + ["the", "film", "was"]) for _ in range(rng.randint(2, 30))) + f",{label}")
    (folder / "texts.csv").write_text("\n".join(rows) + "\n")


class _Counter(L.Callback):
    """Counts the conversions made from the start of one training step to the start of the next."""

    def __init__(self, counts: list[int], where: list[list[str]]):
        self.counts, self.where, self.per_step = counts, where, []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.per_step.append((self.counts[0], list(self.where)))
        self.counts[0] = 0
        self.where.clear()


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_a_training_step_makes_no_host_sync(family, tmp_path, monkeypatch):
    counts, where = [0], []
    for name in METHODS:
        original = getattr(torch.Tensor, name)

        def wrapped(self, *args, _original=original, _name=name, **kwargs):
            caller = sys._getframe(1).f_code.co_filename.replace("\\", "/")
            if not caller.endswith(CPU_BY_DESIGN) and not any(d in caller for d in DATA_SIDE):
                counts[0] += 1
                where.append(f"{_name} at " + "".join(traceback.format_stack(limit=4)[:-1]))
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, wrapped)
    counter = _Counter(counts, where)
    overrides = FAMILIES[family]
    if family == "text_rnn":
        _texts(tmp_path)
        overrides = [o.replace("texts.csv", str(tmp_path / "texts.csv")) for o in overrides]
    run(make_cfg(tmp_path, [*overrides, *QUIET]), extra_callbacks=[counter])
    monkeypatch.undo()
    steady = counter.per_step[2:]  # the first steps set things up (optimiser state, metric buffers)
    assert len(steady) >= 1
    syncs = [(n, w) for n, w in steady if n]
    assert not syncs, f"{family}: {len(syncs)} of {len(steady)} training steps read a tensor on the host; first:\n" \
                      + "\n".join(syncs[0][1][:3])


def test_the_progress_bar_reads_training_values_at_its_refresh_rate(tmp_path, monkeypatch):
    """seqgen's bar (Lightning's rich bar) shows train/loss, read from the trainer's tensors only when
    it refreshes: with refresh_rate 4, at most one step in four reads a value on the host."""
    from seqgen.callbacks import ProgressBar

    counts, where = [0], []
    original = torch.Tensor.__float__

    def wrapped(self, *args, **kwargs):
        counts[0] += 1
        return original(self, *args, **kwargs)

    monkeypatch.setattr(torch.Tensor, "__float__", wrapped)
    counter, bar = _Counter(counts, where), ProgressBar(refresh_rate=4)
    shown = {}

    class Look(L.Callback):
        def on_train_epoch_end(self, trainer, pl_module):
            shown.update(bar.get_metrics(trainer, pl_module))

    overrides = ["task=digits_mlp", "steps_per_execution=1", "trainer.limit_train_batches=20",
                 *[o for o in QUIET if not o.startswith("callbacks.progress_bar")], "callbacks.progress_bar=null"]
    run(make_cfg(tmp_path, overrides), extra_callbacks=[counter, bar, Look()])
    monkeypatch.undo()
    steady = counter.per_step[2:]
    reads = sum(1 for n, _ in steady if n)
    assert len(steady) == 18 and 1 <= reads <= 5  # steps 4, 8, 12, 16 (and 20) of 20
    assert "train/loss" in shown and isinstance(shown["train/loss"], float)
