"""Steps per execution (``steps_per_execution: K``): K optimiser steps per Lightning training step
make the same updates in the same order as K=1 -- the final weights are equal bit for bit on CPU --
with the same global step, epoch metrics, logger step axis and ``max_steps``; the loader's groups
are the loader's own batches; bad combinations are refused with the key named. Kill/resume at K=8:
tests/test_interrupt.py (every family there runs its recipe's K=8); DDP at K=8 against K=1:
tests/test_cli.py::test_ddp_cpu_steps_per_execution_make_the_same_updates_as_one."""

from __future__ import annotations

import csv

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader

from conftest import make_cfg
from seqgen.data.grouping import group_loader
from seqgen.errors import ConfigError
from seqgen.train import run

QUIET = ["callbacks.progress_bar=null", "logger=csv", "trainer.enable_model_summary=false", "trainer.deterministic=true"]
CASES = {
    # name: overrides (small and fast; each exercises what K could get wrong)
    "classifier_dropout_cosine": ["task=digits_mlp", "trainer.max_epochs=2", "model.net.dropout=0.2",
                                  "model.scheduler.name=cosine", "callbacks.early_stopping=null"],
    "classifier_max_steps_onecycle": ["task=digits_mlp", "trainer.max_steps=30", "model.scheduler.name=onecycle"],
    "classifier_bf16": ["task=digits_mlp", "trainer.max_epochs=1", "trainer.precision=bf16-mixed"],
    "lm_tbptt_clip": ["task=char_lm", "model.net.hidden_size=48", "model.net.num_layers=1", "model.net.embedding_dim=16",
                      "data.batch_size=8", "data.bptt=40", "trainer.max_epochs=2", "trainer.limit_train_batches=21",
                      "trainer.limit_val_batches=3", "trainer.limit_test_batches=3", "callbacks.text_samples=null",
                      "trainer.gradient_clip_val=0.5"],
    "vae_stochastic_binarisation": ["task=digits_vae", "trainer.max_epochs=2"],
    "gan_manual_optimisation": ["task=digits_gan", "trainer.max_epochs=1", "trainer.limit_train_batches=20",
                                "model.eval_samples=200"],
    "translator": ["task=dates_attn", "data.num_train=600", "data.num_eval=60", "model.net.hidden_size=32",
                   "trainer.max_epochs=2", "callbacks.early_stopping=null"],
    "translator_bf16_cast_cache": ["task=dates_attn", "data.num_train=1000", "data.batch_size=64", "data.num_eval=30",
                                   "model.net.hidden_size=16",
                                   "trainer.max_epochs=1", "trainer.precision=bf16-mixed", "callbacks.early_stopping=null"],
}


def _train(tmp_path, overrides, k):
    cfg = make_cfg(tmp_path / f"k{k}", [*overrides, f"steps_per_execution={k}", *QUIET])
    metrics = run(cfg)
    run_dir = tmp_path / f"k{k}" / "run"
    return metrics, torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True), run_dir


@pytest.mark.parametrize("case", sorted(CASES))
def test_k_steps_per_execution_make_the_same_updates_as_one(case, tmp_path):
    a, ckpt_a, dir_a = _train(tmp_path, CASES[case], 1)
    b, ckpt_b, dir_b = _train(tmp_path, CASES[case], 8)
    assert ckpt_a["global_step"] == ckpt_b["global_step"] > 8
    wa, wb = ckpt_a["state_dict"], ckpt_b["state_dict"]
    assert wa.keys() == wb.keys()
    differ = [k for k in wa if not torch.equal(wa[k], wb[k])]
    assert not differ, f"{case}: weights differ after the same number of steps: {differ[:5]}"
    # every metric but the per-step training values (a group logs the mean of its K steps) agrees
    for key in a:
        if key.endswith("_step") or key.startswith(("perf/", "train/beta")):
            continue
        assert b[key] == pytest.approx(a[key], rel=1e-5, abs=1e-6), key


def _logged_steps(run_dir, column):
    with open(next(run_dir.rglob("metrics.csv"))) as f:
        return [int(r["step"]) for r in csv.DictReader(f) if r.get(column)]


def test_the_loggers_step_axis_stays_in_optimiser_steps(tmp_path):
    overrides = ["task=digits_mlp", "trainer.max_epochs=2", "trainer.log_every_n_steps=8", "callbacks.early_stopping=null"]
    _, _, dir1 = _train(tmp_path, overrides, 1)
    _, _, dir8 = _train(tmp_path, overrides, 8)
    steps1, steps8 = _logged_steps(dir1, "train/loss_step"), _logged_steps(dir8, "train/loss_step")
    assert steps1 == [7, 15, 23, 31, 39]  # 42 steps (21 an epoch), a log every 8
    # groups of 8, 8 and 5 an epoch, ending after steps 8, 16, 21, 29, 37, 42: those that cross a
    # multiple of 8 log, at the index of their last step
    assert steps8 == [7, 15, 28, 36, 41]
    assert _logged_steps(dir8, "val/loss") == _logged_steps(dir1, "val/loss") == [20, 41]


def test_groups_are_the_loaders_own_batches_in_order():
    data = torch.arange(23)
    plain = list(DataLoader(data, batch_size=3))
    grouped = group_loader(DataLoader(data, batch_size=3), 4)
    assert len(grouped) == 2 and isinstance(grouped, DataLoader)
    groups = list(grouped)
    assert [len(g) for g in groups] == [4, 4]
    assert all(torch.equal(x, y) for x, y in zip([b for g in groups for b in g], plain))
    limited = group_loader(DataLoader(data, batch_size=3), 2, limit=5)  # limit_train_batches=5, before grouping
    assert len(limited) == 3 and [len(g) for g in limited] == [2, 2, 1] and limited.batches_per_epoch() == 5


@pytest.mark.parametrize("binarize, limit", [("stochastic", None), (None, 13)])
def test_a_group_gathered_at_once_holds_the_loaders_own_batches(binarize, limit):
    """An in-memory image set (TensorPairs) is read a group at a time (one gather for K batches):
    the batches, their order and the stochastic binarisation's draws are the ungrouped loader's,
    epoch after epoch, with a batch limit too."""
    from seqgen.data.grouping import _gathers
    from seqgen.data.images import ImageDataModule

    def loader():
        dm = ImageDataModule("digits", normalize=False, binarize=binarize, batch_size=32)
        dm.setup()
        return dm.train_dataloader()

    plain, grouped = loader(), group_loader(loader(), 8, limit=limit)
    assert _gathers(grouped)
    for epoch in (0, 1):
        plain.sampler.set_epoch(epoch), grouped.sampler.set_epoch(epoch)
        expected = list(plain)[:limit]
        got = [b for group in grouped for b in group]
        assert len(got) == len(expected) and len(got) > 8
        for (x, y), (ex, ey) in zip(got, expected):
            assert torch.equal(x, ex) and torch.equal(y, ey) and x.dtype == ex.dtype


@pytest.mark.parametrize("drop_last, skip", [(False, 0), (True, 0), (False, 70), (True, 70)])
def test_a_shuffled_group_is_cut_from_the_samplers_order_as_batch_sampler_cuts_it(drop_last, skip):
    """A grouped loader over an EpochShuffle reads the pass's order as one tensor and cuts it into
    batches itself: the same batches as the loader's own (a short last batch, or none with
    drop_last; a resumed pass that skips examples), and the sampler's pass bookkeeping as its own."""
    from seqgen.data.grouping import _group_indices
    from seqgen.data.images import EpochShuffle, TensorPairs
    from seqgen.data.registry import as_collated

    data = TensorPairs(torch.arange(230.0).view(115, 2), torch.arange(115))

    def loader():
        return DataLoader(data, batch_size=8, sampler=EpochShuffle(115, seed=5, skip=lambda: skip),
                          drop_last=drop_last, collate_fn=as_collated)

    plain, grouped = loader(), group_loader(loader(), 4)
    sizes = [s for s, _ in _group_indices(grouped)]
    assert sum(sizes, []) == [len(b) for b in plain.batch_sampler]  # cut arithmetically, not by iterating it
    for epoch in (0, 1, 2):
        plain.sampler.set_epoch(epoch), grouped.sampler.set_epoch(epoch)
        expected = list(plain)
        groups = list(grouped)
        got = [b for group in groups for b in group]
        assert [len(g) for g in groups[:-1]] == [4] * (len(groups) - 1) and len(got) == len(expected)
        assert all(torch.equal(x, ex) and torch.equal(y, ey) for (x, y), (ex, ey) in zip(got, expected))
        assert (grouped.sampler.passes, grouped.sampler.started) == (plain.sampler.passes, plain.sampler.started)


@pytest.mark.parametrize("batch_size, drop_last", [(8, False), (8, True), (115, False), (200, False)])
def test_an_in_order_loader_serves_torchs_batches_and_draws_what_torchs_iterator_draws(batch_size, drop_last):
    """An evaluation loader over an in-memory dataset read in order gathers each batch's index range:
    the batches of torch's iterator, epoch after epoch, and the global random stream left where
    torch's iterator leaves it (it draws a base seed as it starts). Another sampler: torch's iterator."""
    from torch.utils.data import SequentialSampler

    from seqgen.data.grouping import in_order_loader
    from seqgen.data.images import EpochShuffle, TensorPairs
    from seqgen.data.registry import as_collated

    data = TensorPairs(torch.arange(230.0).view(115, 2), torch.arange(115))

    def loader(**kw):
        return DataLoader(data, batch_size=batch_size, drop_last=drop_last, collate_fn=as_collated, **kw)

    plain, fast = loader(), in_order_loader(loader())
    assert isinstance(fast, DataLoader) and type(fast.sampler) is SequentialSampler and len(fast) == len(plain)
    gathered = []
    data.gather_examples = lambda index, _g=data.gather_examples: gathered.append(index) or _g(index)
    for _ in range(2):
        calls = len(gathered)
        torch.manual_seed(7)
        expected, after_plain = list(plain), torch.rand(3)
        torch.manual_seed(7)
        got, after_fast = list(fast), torch.rand(3)
        assert len(got) == len(expected) and torch.equal(after_fast, after_plain)
        assert all(torch.equal(x, ex) and torch.equal(y, ey) for (x, y), (ex, ey) in zip(got, expected))
        assert len(gathered) - calls == 2 * len(expected)  # one gather a batch, by each loader
    shuffled = in_order_loader(loader(sampler=EpochShuffle(115, seed=3)))
    assert [y.tolist() for _, y in shuffled] == [y.tolist() for _, y in loader(sampler=EpochShuffle(115, seed=3))]


@pytest.mark.parametrize("overrides, match", [
    (["steps_per_execution=0"], "steps_per_execution must be a positive integer"),
    (["steps_per_execution=4", "trainer.accumulate_grad_batches=2"], "cannot be combined with trainer.accumulate_grad_batches"),
])
def test_bad_steps_per_execution_is_refused_before_training(overrides, match, tmp_path):
    with pytest.raises(ConfigError, match=match):
        run(make_cfg(tmp_path, ["task=digits_mlp", *overrides, *QUIET]))


@pytest.mark.slow
def test_the_gpu_pass_runs_in_its_tiny_mode(tmp_path):
    """benchmarks/gpu_pass.sh end to end on small nets (on this CPU when there is no GPU): every row of
    its table is filled, so the script a borrowed GPU machine runs has not rotted."""
    import os
    import subprocess
    import sys

    from conftest import ROOT

    out = tmp_path / "gpu_pass.md"
    proc = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_pass.sh"), "--tiny", "--out", str(out)], cwd=tmp_path,
                          capture_output=True, text=True, timeout=400, env={**os.environ, "PYTHON": sys.executable})
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [line for line in out.read_text().splitlines() if line.startswith("| ") and "---" not in line][1:]
    names = {r.split(" | ")[0].strip("| ") for r in rows}
    assert {"char LM (tokens/s)", "word LM (tokens/s)", "ResNet-18, CIFAR shape (images/s)", "dates translator (steps/s)",
            "digits MLP, trainer=ddp devices=1 (steps/s)", "host syncs per training step"} <= names
    for r in rows[:-1]:  # every timed row has a positive plain and seqgen rate
        cells = [c.strip() for c in r.strip("|").split("|")]
        assert float(cells[3]) > 0 and float(cells[4]) > 0, r
    # the sync count's run is made here too, its debug mode switched by a stand-in (no CUDA to count)
    import re

    sync = [c.strip() for c in rows[-1].strip("|").split("|")]
    counted = re.fullmatch(r"n/a: no CUDA \(counting run: (\d+) steps\)", sync[4])
    assert sync[0] == "host syncs per training step" and counted and int(counted[1]) > 0, rows[-1]


def test_the_gpu_pass_keeps_going_past_a_failed_row_and_stops_starting_rows_at_its_budget(monkeypatch, tmp_path):
    """A borrowed GPU machine gives one try: a row that raises is reported in the table with its error
    and the rows after it still run; once the budget is spent the rows left are listed as not run (and
    the pass reports failure); the compiled rows come last; the table file is rewritten after each row."""
    from conftest import ROOT

    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import gpu_pass

    clock = iter(range(0, 10_000, 10))  # 10 s a reading: a row (read at its start and end) takes 20 s

    def timed(tmp, device, tiny, steps, warmup, name, variant):
        if (name, variant) == ("word LM (tokens/s)", "fp32"):
            raise RuntimeError("CUDA out of memory\nmore lines")
        return [name, variant, 8, 1.0, 1.0, 1.0]

    monkeypatch.setattr(gpu_pass, "_timed_row", timed)
    monkeypatch.setattr(gpu_pass, "sync_count", lambda tmp, device: "0.00 (0 in 8 steps)")
    jobs = gpu_pass.plan("cuda", tiny=False)
    assert jobs[-3:] == [(name, "compile") for name, *_ in gpu_pass.ROWS[:3]]  # no compiled translator
    assert jobs[:2] == [("char LM (tokens/s)", "fp32"), ("char LM (tokens/s)", "bf16-mixed")]
    seen = []
    rows, ok = gpu_pass.measure(tmp_path, "cuda", False, 8, 4, budget_s=200,
                                progress=lambda rows: seen.append(len(rows)), clock=lambda: next(clock))
    assert not ok and len(rows) == len(jobs) and seen == list(range(1, len(jobs) + 1))
    status = [r[5] for r in rows]
    assert status[2] == "failed: RuntimeError: CUDA out of memory" and status[3] == 1.0  # the word LM's bf16 row still ran
    ran = [r for r in rows if not str(r[5]).startswith("not run")]
    assert len(ran) == 10 and ran[-1] == [gpu_pass.SYNC_ROW, "fp32", 8, "-", "0.00 (0 in 8 steps)", "-"]  # within 200 s
    assert all(s == "not run: the 200 s budget was spent" for s in status[10:]) and rows[-1][1] == "compile"
    assert [r[0] for r in rows[:10]][-2:] == [gpu_pass.DDP_ROW, gpu_pass.SYNC_ROW]


@pytest.mark.parametrize("device", ["cuda", "cpu"])
def test_every_gpu_pass_row_runs_seqgen_in_the_plain_loops_precision(monkeypatch, tmp_path, device):
    """Each timed row of the GPU pass composes a seqgen run in the precision its plain loop runs in, on the
    row's accelerator, with one device (``trainer=ddp`` alone would give bf16-mixed on every GPU: the DDP
    row compared a bf16 seqgen with an fp32 plain loop), compiled exactly in the compiled rows."""
    from conftest import ROOT

    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import gpu_pass

    jobs = [j for j in gpu_pass.plan(device, tiny=False) if j[0] != gpu_pass.SYNC_ROW]
    assert gpu_pass.DDP_ROW in {name for name, _ in jobs}
    for name, variant in jobs:
        over, precision = gpu_pass.row_overrides(name, variant, device, tiny=False)
        cfg = gpu_pass.make_cfg(tmp_path / "x", over)
        assert precision == ("bf16-mixed" if variant == "bf16-mixed" else "32-true")
        assert (cfg.trainer.precision, cfg.trainer.accelerator, cfg.trainer.devices) == \
            (precision, "gpu" if device == "cuda" else "cpu", 1), (name, variant)
        assert bool(cfg.model.get("compile", False)) == (variant == "compile"), (name, variant)


@pytest.mark.parametrize("poisoned", [10, 8])
def test_a_nan_inside_a_group_stops_with_its_step_and_the_last_good_checkpoint(tmp_path, poisoned):
    """The losses of a group are checked on the device, stacked, once per group; the run stops naming
    the first non-finite step (the first of its group, or one inside it), and the checkpoint left is
    the one written before it (none holds NaN weights)."""
    from seqgen.errors import NonFiniteLossError

    lm = ["task=char_lm", "model.net.hidden_size=32", "model.net.embedding_dim=16", "model.net.num_layers=1",
          "data.batch_size=8", "data.bptt=20", "trainer.limit_val_batches=2", "trainer.limit_test_batches=2",
          "trainer.num_sanity_val_steps=0", "callbacks.text_samples=null"]
    # 6 batches an epoch in groups of 4 and 2: step 10 is the first of epoch 1's second group, step 8
    # the third of its first (steps 6-9); every later step of the run is non-finite too
    cfg = make_cfg(tmp_path, [*lm, *QUIET, "steps_per_execution=4", "trainer.max_epochs=3", "trainer.limit_train_batches=6",
                              "+callbacks.poison._target_=conftest.PoisonAt", f"+callbacks.poison.step={poisoned}"])
    with pytest.raises(NonFiniteLossError, match=rf"global step {poisoned} .*Last good checkpoint: .*last\.ckpt"):
        run(cfg)
    ckpt = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert ckpt["global_step"] == 6 and all(torch.isfinite(v).all() for v in ckpt["state_dict"].values())


class _Recorder:
    """A stand-in module: records what the group's flush hands to ``log``."""

    def __init__(self):
        self.logged = {}

    def log(self, name, value, **opts):
        self.logged[name] = (value, opts)


def test_a_group_logs_each_name_once_with_lightnings_reductions():
    """What a group of three micro-batches logs per name: the batch-size-weighted mean (the epoch mean
    Lightning would have built from three calls), the sum, max and min, the last value for another
    ``reduce_fx``, Python numbers kept as numbers, positional options in Lightning's order, and
    anything else (a torchmetrics Metric) handed over as given."""
    from seqgen.models.execution import DeferredLog

    module = _Recorder()
    metric = object()
    sizes = [4, 2, 3]
    losses = [torch.tensor(1.0), torch.tensor(4.0), torch.tensor(2.0)]
    log = DeferredLog(module)
    with log:
        for i, n in enumerate(sizes):
            log.batch = (torch.zeros(n, 5), torch.zeros(n))  # batch size inferred: n
            module.log("loss", losses[i], True)  # prog_bar=True, positionally
            module.log("same_size", torch.tensor([float(i), float(i) + 2]), batch_size=8)  # a vector: its mean
            module.log("total", losses[i], reduce_fx="sum")
            module.log("peak", losses[i], reduce_fx="max")
            module.log("low", losses[i], reduce_fx="min")
            module.log("last", losses[i], reduce_fx=torch.median)
            module.log("beta", 0.5 * i)
            module.log("acc", metric)
        assert module.logged == {}  # nothing reaches Lightning inside the group
    log.flush()
    got = module.logged
    assert got["loss"][0].item() == pytest.approx((1 * 4 + 4 * 2 + 2 * 3) / 9)
    assert got["loss"][1] == {"prog_bar": True, "batch_size": 9}
    assert got["same_size"][0].item() == pytest.approx((1 + 2 + 3) / 3) and got["same_size"][1]["batch_size"] == 24
    assert got["total"][0].item() == 7.0 and got["peak"][0].item() == 4.0 and got["low"][0].item() == 1.0
    assert torch.equal(got["last"][0], losses[-1])
    assert got["beta"][0] == pytest.approx((0 * 4 + 0.5 * 2 + 1.0 * 3) / 9) and isinstance(got["beta"][0], float)
    assert got["acc"][0] is metric and "batch_size" not in got["acc"][1]
    assert "log" not in vars(module)  # Lightning's own method is back after the group
    log.flush()
    assert len(got) == 8  # a second flush has nothing new to log


def test_a_host_batch_goes_to_the_cpu_as_it_is_and_anything_else_through_lightning(monkeypatch):
    """``SeqgenDataModule.transfer_batch_to_device`` (seqgen's data modules) on a CPU device: CPU tensors in lists, tuples and
    dicts are returned as they are (Lightning would rebuild them around the same tensors); a batch
    with anything it does not know (an object with its own ``to``, a tensor subclass) takes
    Lightning's own path, which moves it."""
    from lightning.pytorch.core.hooks import DataHooks

    from seqgen.data import SyntheticSequenceDataModule
    from seqgen.data.registry import on_host

    class Moves:
        def __init__(self):
            self.moved_to = None

        def to(self, device, **kwargs):
            self.moved_to = device
            return self

    calls = []
    real = DataHooks.transfer_batch_to_device
    monkeypatch.setattr(DataHooks, "transfer_batch_to_device", lambda self, *a: (calls.append(a[0]), real(self, *a))[1])
    module, cpu = SyntheticSequenceDataModule(), torch.device("cpu")
    group = [(torch.rand(4, 2), torch.arange(4)) for _ in range(3)]
    text = {"src": torch.zeros(2, 3, dtype=torch.long), "lengths": [3, 2], "ids": ("a", "b"), "n": 2, "none": None}
    for batch in (group, text, torch.ones(2)):
        assert module.transfer_batch_to_device(batch, cpu, 0) is batch and on_host(batch)
    assert calls == []
    custom = [torch.ones(1), Moves()]
    out = module.transfer_batch_to_device(custom, cpu, 0)
    assert calls == [custom] and out[1].moved_to == cpu  # Lightning moved it
    for odd in ([torch.nn.Parameter(torch.ones(1))], [[[[[torch.ones(1)]]]]], {1, 2}):
        assert not on_host(odd)


def test_inner_steps_clear_gradients_as_zero_grad_does_or_through_the_models_own_hook(tmp_path, monkeypatch):
    """A group's inner updates set every gradient to None as ``optimizer.zero_grad()`` does (torch's
    own under a profiler, so the trace shows it); a model that overrides Lightning's
    ``optimizer_zero_grad`` hook has it called for every update, inner or not."""
    from seqgen.models import Classifier
    from seqgen.models.execution import clear_grads

    net = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Linear(3, 2))
    opt = torch.optim.SGD([{"params": net[0].parameters()}, {"params": net[1].parameters(), "lr": 0.5}], lr=0.1)
    net(torch.ones(2, 4)).sum().backward()
    assert all(p.grad is not None for p in net.parameters())
    clear_grads(opt)
    assert all(p.grad is None for p in net.parameters())
    net(torch.ones(2, 4)).sum().backward()
    with torch.profiler.profile() as prof:
        clear_grads(opt)
    assert all(p.grad is None for p in net.parameters())
    assert any("zero_grad" in e.name for e in prof.events())  # torch's own path under the profiler
    calls = []

    def optimizer_zero_grad(self, epoch, batch_idx, optimizer):
        calls.append(batch_idx)
        optimizer.zero_grad()

    monkeypatch.setattr(Classifier, "optimizer_zero_grad", optimizer_zero_grad, raising=False)
    metrics = run(make_cfg(tmp_path, ["task=digits_mlp", "trainer.max_steps=20", "steps_per_execution=8", "test=false",
                                      *QUIET]))
    # every update: the inner ones with their micro-batch's index, each group's last from Lightning with the group's
    assert metrics and calls == [*range(7), 0, *range(8, 15), 1, *range(16, 19), 2]


def test_the_global_step_a_groups_steps_read_is_lightnings(tmp_path, monkeypatch):
    """Inside a group the module's ``global_step`` is the group's own count (no Lightning property
    chain at every read): at every micro-step, the number Lightning's loop holds; after the group,
    Lightning's again. Groups of 8, 8 and 4 (an epoch of 21 batches, cut by max_steps=20)."""
    from seqgen.models import Classifier

    seen = []
    real = Classifier.training_step

    def training_step(self, batch, batch_idx):
        seen.append((self.global_step, self.trainer.fit_loop.epoch_loop.global_step, "_group_step" in self.__dict__))
        return real(self, batch, batch_idx)

    monkeypatch.setattr(Classifier, "training_step", training_step)
    model = []

    class Check(L.Callback):
        def on_train_batch_end(self, trainer, pl_module, *args):
            model.append((pl_module.global_step, trainer.global_step, "_group_step" in pl_module.__dict__))

    run(make_cfg(tmp_path, ["task=digits_mlp", "trainer.max_steps=20", "steps_per_execution=8", "test=false", *QUIET]),
        extra_callbacks=[Check()])
    assert [s for s, _, _ in seen] == list(range(20)) and all(a == b for a, b, _ in seen)
    assert all(inside for _, _, inside in seen)  # every read inside a group was the group's count
    assert model == [(8, 8, False), (16, 16, False), (20, 20, False)]


def test_inner_updates_step_as_torchs_step_does_and_keep_its_hooks_profiler_range_and_patches():
    """``optimizer_step``: the same update as ``optimizer.step()`` (bit for bit); with a step hook, a
    running profiler or an instance ``step`` replaced by anything but an LR scheduler's counter,
    torch's own call runs (hooks called, the range in the trace, the patch honoured); after a
    scheduler's counter, the flag it sets is set (no "scheduler before optimizer" warning)."""
    import warnings

    from seqgen.models.execution import optimizer_step

    def pair():
        torch.manual_seed(0)
        nets = [torch.nn.Linear(5, 3) for _ in range(2)]
        nets[1].load_state_dict(nets[0].state_dict())
        opts = [torch.optim.Adam(n.parameters(), lr=0.1, fused=True) for n in nets]
        return nets, opts

    nets, opts = pair()
    for step in range(3):
        for net in nets:
            net.zero_grad()
            net(torch.full((2, 5), float(step + 1))).pow(2).sum().backward()
        opts[0].step()
        optimizer_step(opts[1])
    assert all(torch.equal(a, b) for a, b in zip(nets[0].parameters(), nets[1].parameters()))
    assert opts[0].state_dict()["state"][0]["step"] == opts[1].state_dict()["state"][0]["step"] == 3

    nets, (opt, _) = pair()
    nets[0](torch.ones(1, 5)).sum().backward()
    ran = []
    handle = opt.register_step_post_hook(lambda *a: ran.append("hook"))
    optimizer_step(opt)
    handle.remove()
    with torch.profiler.profile() as prof:
        optimizer_step(opt)
    assert ran == ["hook"] and any("Optimizer.step" in e.name for e in prof.events())
    original = opt.step
    opt.step = lambda *a, **k: ran.append("patched") or original(*a, **k)
    optimizer_step(opt)
    assert ran[-1] == "patched"
    del opt.step
    sched = torch.optim.lr_scheduler.StepLR(opt, 1)
    opt._opt_called = False
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        optimizer_step(opt)
        sched.step()
    assert opt._opt_called


@pytest.mark.parametrize("cls, options", [(torch.optim.Adam, {}), (torch.optim.AdamW, {}),
                                          (torch.optim.Adam, {"weight_decay": 0.1, "maximize": True}),
                                          (torch.optim.Adam, {"decoupled_weight_decay": True, "weight_decay": 0.1})])
def test_the_lean_fused_adam_step_is_torchs_step_bit_for_bit(cls, options):
    """``optimizer_step`` on a fused Adam/AdamW calls torch's fused kernel itself after torch's own
    first step: parameters and every state tensor equal to ``optimizer.step()``'s after each of five
    steps, two parameter groups with their own lr and weight decay, one parameter without a gradient;
    an optimiser it does not cover (amsgrad, not fused, no state yet, a tensor lr) is left to torch."""
    from seqgen.models.execution import _fused_adam_step, optimizer_step

    torch.manual_seed(0)
    nets = [torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.Linear(7, 3), torch.nn.Linear(3, 3)) for _ in range(2)]
    nets[1].load_state_dict(nets[0].state_dict())
    opts = [cls([{"params": [*n[0].parameters(), *n[2].parameters()]}, {"params": n[1].parameters(), "lr": 0.05,
                                                                          "weight_decay": 0.0}],
                lr=0.1, fused=True, **options) for n in nets]
    for step in range(5):
        for net in nets:
            net.zero_grad(set_to_none=True)
            net[:2](torch.full((2, 5), float(step + 1))).pow(2).sum().backward()  # net[2]: no gradient
        opts[0].step()
        assert _fused_adam_step(opts[1]) is (step > 0)  # torch's own first step makes the state
        if step == 0:
            optimizer_step(opts[1])
            if cls is torch.optim.AdamW:  # as an older torch's AdamW: no decoupled_weight_decay key in its groups
                for group in opts[1].param_groups:
                    del group["decoupled_weight_decay"]
        for a, b in zip(nets[0].parameters(), nets[1].parameters()):
            assert torch.equal(a, b)
            for key in opts[0].state.get(a, {}):
                assert torch.equal(opts[0].state[a][key], opts[1].state[b][key]), key
    assert not opts[1].state.get(nets[1][2].weight)  # never stepped
    net = torch.nn.Linear(2, 2)
    for opt in (torch.optim.Adam(net.parameters(), amsgrad=True, fused=True), torch.optim.Adam(net.parameters()),
                torch.optim.Adam(net.parameters(), lr=torch.tensor(0.1), fused=True)):
        net(torch.ones(1, 2)).sum().backward()
        opt.step()
        assert _fused_adam_step(opt) is False
    fresh = torch.optim.Adam(net.parameters(), fused=True)
    assert _fused_adam_step(fresh) is False  # no state yet
