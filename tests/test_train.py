"""seqgen.train.run: clear config errors, exact resume, checkpoints that load safely,
non-finite losses, and a language model that really learns."""

from __future__ import annotations

import math

import lightning as L
import pytest
import torch
from hydra.errors import ConfigCompositionException, MissingConfigException

from conftest import make_cfg
from seqgen.data import LMDataModule
from seqgen.errors import CheckpointError, ConfigError, NonFiniteLossError
from seqgen.models import LanguageModel
from seqgen.train import run

TINY = [  # one optimiser step per training step: the callbacks here act on single steps (K > 1: test_execution.py)
    "steps_per_execution=1", "model.net.hidden_size=32", "model.net.embedding_dim=16", "model.net.num_layers=1", "model.net.dropout=0.1",
    "data.batch_size=8", "data.eval_batch_size=4", "data.bptt=20",
    "trainer.limit_train_batches=10", "trainer.limit_val_batches=4", "trainer.limit_test_batches=4",
    "trainer.num_sanity_val_steps=0", "trainer.enable_model_summary=false", "callbacks.progress_bar=null",
    "callbacks.text_samples.max_new_tokens=20", "callbacks.text_samples.echo=false",
]


def test_unknown_task_lists_available(tmp_path):
    with pytest.raises(MissingConfigException) as e:
        make_cfg(tmp_path, ["task=char_llm"])
    assert "char_lm" in str(e.value) and "Available options" in str(e.value)


def test_misspelled_key_fails_at_compose(tmp_path):
    with pytest.raises(ConfigCompositionException, match="max_epoch"):
        make_cfg(tmp_path, ["trainer.max_epoch=3"])


@pytest.mark.parametrize("override,key", [
    ("data.batch_size=abc", "data.batch_size"),
    ("data.bptt=0", "data.bptt"),
    ("model.net.hidden_size=-3", "model.net.hidden_size"),
    ("model.optimizer.lr=-1", "model.optimizer.lr"),
    ("trainer.max_epochs=two", "trainer.max_epochs"),
    ("model.net.dropout=1.5", "model.net.dropout"),
    ("seed=1.5", "seed"),
    ("trainer.deterministic=maybe", "trainer.deterministic"),
])
def test_bad_values_name_the_key_before_training(tmp_path, override, key):
    cfg = make_cfg(tmp_path, ["trainer=debug", override])
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        run(cfg)
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_missing_required_value_is_named(tmp_path):
    cfg = make_cfg(tmp_path, ["trainer=debug", "data=text_files"])
    with pytest.raises(ConfigError, match="data.train"):
        run(cfg)


def test_unknown_optimizer_lists_valid(tmp_path):
    cfg = make_cfg(tmp_path, ["trainer=debug", "model.optimizer.name=adamm", *TINY])
    with pytest.raises(ConfigError, match="available: sgd, adagrad, rmsprop, adam, adamw"):
        run(cfg)


def test_optimisers_are_fused_only_where_torch_has_the_kernel():
    """The fused step is the default for Adam, AdamW, SGD and Adagrad on the CPU; on a CUDA device not for
    Adagrad (no CUDA kernel in some supported torch releases, found only at the first step there); never
    for other devices or integer tensors; ``fused=False`` is kept as given. (CUDA tensors by stand-in.)"""
    from types import SimpleNamespace

    from seqgen.models.optim import build_optimizer, fusable

    params = [torch.nn.Parameter(torch.zeros(3, 2))]
    for name in ("adam", "adamw", "sgd", "adagrad"):
        assert build_optimizer(params, name, lr=0.1).defaults["fused"] is True
    assert not build_optimizer(params, "adam", lr=0.1, fused=False).defaults["fused"]
    on = lambda kind: SimpleNamespace(device=SimpleNamespace(type=kind), is_floating_point=lambda: True)  # noqa: E731
    assert [fusable(n, [on("cuda")]) for n in ("adam", "adamw", "sgd", "adagrad")] == [True, True, True, False]
    assert not fusable("adam", [on("cpu"), on("meta")]) and not fusable("rmsprop", params)
    assert not fusable("adam", [torch.zeros(2, dtype=torch.int64)]) and not fusable("adam", [])


def test_missing_checkpoint_path(tmp_path):
    cfg = make_cfg(tmp_path, ["trainer=debug", f"ckpt_path={tmp_path}/nope.ckpt"])
    with pytest.raises(CheckpointError, match="not found"):
        run(cfg)


def _final_state(run_dir):
    ckpt = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    return ckpt["state_dict"]


def test_resume_reproduces_uninterrupted_run(tmp_path):
    common = [*TINY, "trainer.deterministic=true", "seed=7", "data.bptt_jitter=true"]
    full = run(make_cfg(tmp_path / "full", [*common, "trainer.max_epochs=2"]))
    run(make_cfg(tmp_path / "first", [*common, "trainer.max_epochs=1"]))
    first_last = tmp_path / "first" / "run" / "checkpoints" / "last.ckpt"
    resumed = run(make_cfg(tmp_path / "resumed", [*common, "trainer.max_epochs=2", f"ckpt_path={first_last}"]))
    for key in ("val/loss", "test/loss", "train/loss_epoch"):
        assert resumed[key] == full[key], f"{key}: resumed {resumed[key]} != uninterrupted {full[key]}"
    a, b = _final_state(tmp_path / "full" / "run"), _final_state(tmp_path / "resumed" / "run")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    # ckpt_path may also be a run folder or `last`
    cfg = make_cfg(tmp_path / "again", [*common, "trainer.max_epochs=2", f"ckpt_path={tmp_path / 'first' / 'run'}"])
    assert run(cfg)["test/loss"] == full["test/loss"]


def test_run_folder_and_safe_checkpoint_load(tmp_path):
    metrics = run(make_cfg(tmp_path, [*TINY, "trainer.max_epochs=1"]))
    out = tmp_path / "run"
    for rel in ("checkpoints/last.ckpt", "metrics.csv", "metrics.json", "plots/loss.png", "samples/epoch_000.txt", "samples/final.txt"):
        assert (out / rel).is_file(), rel
    assert (out / "plots" / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    ckpt = torch.load(out / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert ckpt["seqgen"]["task"] == "char_lm" and ckpt["seqgen"]["tokenizer"]["kind"] == "char"
    model = LanguageModel.load_from_checkpoint(out / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert model.hparams.net["hidden_size"] == 32
    model.eval()
    x = torch.randint(0, model.vocab_size, (2, 9))
    logits, _ = model(x)
    assert logits.shape == (2, 9, model.vocab_size) and torch.isfinite(logits).all()
    # the loaded model evaluates to the logged validation loss of the saved weights
    assert math.isfinite(metrics["test/loss"])


def test_nan_loss_stops_with_step_and_keeps_last_good_checkpoint(tmp_path):
    cfg = make_cfg(tmp_path, [*TINY, "trainer.max_epochs=3", "trainer.limit_train_batches=3",
                              "+callbacks.poison._target_=conftest.PoisonAt", "+callbacks.poison.step=4"])
    with pytest.raises(NonFiniteLossError, match=r"global step 4.*Last good checkpoint: .*last\.ckpt"):
        run(cfg)
    ckpt = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert ckpt["global_step"] == 3
    assert all(torch.isfinite(v).all() for v in ckpt["state_dict"].values())


def test_checkpoint_writes_run_behind_the_loop_and_finish_before_a_load_or_a_removal(tmp_path, monkeypatch):
    """A save serialises the state of its moment and returns; the file is written on the writer
    thread (held back here) while the state moves on; a load waits for the write; a removal is
    queued behind the writes asked for before it (the file does not come back after it); once the
    trainer is no longer running, a save writes before it returns (after the pending ones)."""
    import threading
    import time

    import seqgen.train as train_mod

    gate, real = threading.Event(), train_mod._write_atomically

    def held(data, path):
        assert gate.wait(30)
        real(data, path)

    monkeypatch.setattr(train_mod, "_write_atomically", held)
    io, path = train_mod.AtomicCheckpointIO(), tmp_path / "a.ckpt"
    state = {"w": torch.arange(4.0)}
    io.save_checkpoint(state, path)
    state["w"].add_(1)  # training goes on
    assert not path.exists()
    threading.Timer(0.2, gate.set).start()
    assert torch.equal(io.load_checkpoint(path, weights_only=True)["w"], torch.arange(4.0))
    io.save_checkpoint(state, path)
    io.remove_checkpoint(path)  # without an attached trainer: runs in the background, as in a fit
    io.wait()
    assert not path.exists()
    gate.clear()
    other = tmp_path / "b.ckpt"
    io.save_checkpoint(state, other)  # held back again
    io.remove_checkpoint(path)  # queued behind that write: returns at once
    io.remove_checkpoint(other)
    assert other.exists() is False and len(io._pending) == 3
    gate.set()
    io.wait()
    assert not path.exists() and not other.exists() and not list(tmp_path.glob("*.tmp"))
    # attached to a trainer that is not running (a save after fit): the file is there on return
    from types import SimpleNamespace

    from lightning.pytorch.trainer.states import TrainerStatus

    class Trainer:  # what the writer reads of a Lightning Trainer
        state = SimpleNamespace(status=TrainerStatus.RUNNING)

    trainer = Trainer()
    io.attach(trainer)
    monkeypatch.setattr(train_mod, "_write_atomically", lambda data, p: (time.sleep(0.3), real(data, p)))
    io.save_checkpoint(state, path)
    assert not path.exists()
    trainer.state.status = TrainerStatus.FINISHED
    io.save_checkpoint({"w": torch.zeros(2)}, path)
    assert torch.equal(torch.load(path, weights_only=True)["w"], torch.zeros(2))
    io.teardown()


def test_a_deferred_best_checkpoint_is_a_copy_written_in_time_before_others_or_never(tmp_path, monkeypatch):
    """Inside ``deferring`` a save only copies the state (later training does not reach the copy);
    a removal before it is written means it is never written; any other save, a due time reached
    (``flush_due``), a load and the teardown write it first, in the order of the saves."""
    import time

    import seqgen.train as train_mod

    written, real = [], train_mod._write_atomically
    monkeypatch.setattr(train_mod, "_write_atomically", lambda data, path: (written.append(path.name), real(data, path)))
    clock = [1000.0]
    monkeypatch.setattr(time, "monotonic", lambda: clock[0])
    io, state = train_mod.AtomicCheckpointIO(), {"w": torch.arange(4.0), "best": {"k": [torch.ones(1)]}}
    with io.deferring(30):
        io.save_checkpoint(state, tmp_path / "a.ckpt")
    state["w"].add_(1), state["best"]["k"][0].add_(1)  # training goes on
    with io.deferring(30):
        io.save_checkpoint(state, tmp_path / "b.ckpt")
    io.remove_checkpoint(tmp_path / "a.ckpt")  # a better model came first: a is never written
    io.save_checkpoint({"w": torch.zeros(2)}, tmp_path / "last.ckpt")  # b is written before it
    io.wait()
    assert written == ["b.ckpt", "last.ckpt"] and not (tmp_path / "a.ckpt").exists()
    b = torch.load(tmp_path / "b.ckpt", weights_only=True)
    assert torch.equal(b["w"], torch.arange(4.0) + 1) and torch.equal(b["best"]["k"][0], torch.full((1,), 2.0))
    with io.deferring(30):
        io.save_checkpoint(state, tmp_path / "c.ckpt")
    state["w"].add_(1)
    clock[0] += 29
    io.flush_due()
    assert not (tmp_path / "c.ckpt").exists() and written[-1] == "last.ckpt"
    clock[0] += 2
    io.flush_due()  # its time is up
    assert torch.equal(io.load_checkpoint(tmp_path / "c.ckpt", weights_only=True)["w"], torch.arange(4.0) + 1)
    with io.deferring(30):
        io.save_checkpoint(state, tmp_path / "d.ckpt")
    io.teardown()  # the end of a fit (or an error) writes what is deferred
    assert written[-1] == "d.ckpt" and torch.equal(torch.load(tmp_path / "d.ckpt", weights_only=True)["w"],
                                                   torch.arange(4.0) + 2)


def test_a_checkpoint_copy_shares_nothing_that_training_changes():
    """``_copy_state`` (what a deferred best keeps): tensors cloned, dicts (and their kind), lists and
    tuples rebuilt, immutable values shared, anything else deep-copied; equal to the original."""
    from collections import OrderedDict, namedtuple

    from seqgen.train import _copy_state

    pair = namedtuple("pair", "a b")
    state = {"sd": OrderedDict(w=torch.arange(3.0), p=torch.nn.Parameter(torch.ones(2))),
             "opt": [{"step": torch.tensor(4.0), "lrs": [0.1, 0.2]}], "rng": (3, (1, 2, 3), None),
             "named": pair([1], torch.zeros(1)), "meta": {"name": "x", "dtype": torch.float32, "n": 2, "ok": True}}
    copy = _copy_state(state)
    assert type(copy["sd"]) is OrderedDict and type(copy["named"]) is pair and copy["rng"] == state["rng"]
    assert copy["meta"] == state["meta"] and copy["opt"][0]["lrs"] == [0.1, 0.2]
    state["sd"]["w"].add_(1), state["sd"]["p"].data.mul_(3), state["opt"][0]["step"].add_(1)
    state["opt"][0]["lrs"].append(0.3), state["named"].a.append(2), state["named"].b.add_(5), state["meta"].update(n=3)
    assert torch.equal(copy["sd"]["w"], torch.arange(3.0)) and torch.equal(copy["sd"]["p"], torch.ones(2))
    assert not copy["sd"]["p"].requires_grad and copy["opt"][0]["step"].item() == 4.0
    assert copy["opt"][0]["lrs"] == [0.1, 0.2] and copy["named"].a == [1] and torch.equal(copy["named"].b, torch.zeros(1))
    assert copy["meta"]["n"] == 2


def test_deferred_best_checkpoints_are_the_same_best_with_fewer_writes(tmp_path, monkeypatch):
    """``write_within_s`` on the best-model checkpoint: a run whose loss falls at every epoch skips
    the writes of bests replaced within the time, and ends with the same file with the same weights
    as a run that writes every new best at once; the test after fit loads it."""
    import seqgen.train as train_mod

    real, written = train_mod._write_atomically, []
    monkeypatch.setattr(train_mod, "_write_atomically", lambda data, path: (written.append(path.name), real(data, path)))
    overrides = [*TINY, "trainer.max_epochs=3", "trainer.limit_train_batches=4", "callbacks.early_stopping=null"]
    runs = {}
    for within in (0, 3600):
        written.clear()
        metrics = run(make_cfg(tmp_path / f"w{within}", [*overrides, f"callbacks.model_checkpoint.write_within_s={within}"]))
        files = sorted(p.name for p in (tmp_path / f"w{within}" / "run" / "checkpoints").glob("epoch_*.ckpt"))
        runs[within] = (metrics, list(written), files)
    (m0, writes0, files0), (m1, writes1, files1) = runs[0], runs[3600]
    # the loss fell at every epoch; last.ckpt is written after the first epoch and the last
    assert writes0 == ["epoch_000.ckpt", "last.ckpt", "epoch_001.ckpt", "epoch_002.ckpt", "last.ckpt"]
    # deferred: epoch 0's best goes out just before the last.ckpt that names it, epoch 1's never
    assert writes1 == ["epoch_000.ckpt", "last.ckpt", "epoch_002.ckpt", "last.ckpt"]
    assert files0 == files1 == ["epoch_002.ckpt"]
    w0 = torch.load(tmp_path / "w0" / "run" / "checkpoints" / "epoch_002.ckpt", weights_only=True)["state_dict"]
    w1 = torch.load(tmp_path / "w3600" / "run" / "checkpoints" / "epoch_002.ckpt", weights_only=True)["state_dict"]
    assert all(torch.equal(w0[k], w1[k]) for k in w0)
    assert m1["test/loss"] == m0["test/loss"]


def test_skip_nonfinite_skips_the_step_and_goes_on(tmp_path):
    cfg = make_cfg(tmp_path, [*TINY, "trainer.max_epochs=2", "trainer.limit_train_batches=3", "model.skip_nonfinite=true",
                              "+callbacks.poison._target_=conftest.PoisonAt", "+callbacks.poison.step=2"])
    metrics = run(cfg)
    assert metrics["train/skipped_steps"] == 1.0 and math.isfinite(metrics["test/loss"])


@pytest.mark.slow
@pytest.mark.learning
def test_char_lm_beats_unigram_baseline_by_wide_margin(tmp_path, learn_seed, lesson):
    cfg = make_cfg(tmp_path, ["trainer.max_epochs=1", f"seed={learn_seed}", "trainer.num_sanity_val_steps=0",
                              "callbacks.progress_bar=null", "callbacks.text_samples.echo=false",
                              "model.net.hidden_size=192", "model.net.num_layers=1", "model.optimizer.lr=0.005"])
    metrics = run(cfg)
    dm = LMDataModule(corpus="pydoc")
    dm.setup()
    unigram = dm.unigram_bits_per_token("test")
    assert unigram > 4.0
    lesson("unigram bpc - test bpc", unigram - metrics["test/bpc"], ">", 1.2)


def test_last_checkpoint_is_refreshed_every_epoch_even_without_improvement(tmp_path):
    # monitor_mode=max on a falling loss: only epoch 0 is "best"; last.ckpt must still be the final epoch
    run(make_cfg(tmp_path, [*TINY, "trainer.max_epochs=3", "monitor_mode=max", "trainer.limit_train_batches=3"]))
    last = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert last["epoch"] == 2 and last["global_step"] == 9
    assert (tmp_path / "run" / "checkpoints" / "epoch_000.ckpt").is_file()


@pytest.mark.parametrize("interval, stop, written", [
    (0, [], [0, 1, 2, 3]),                     # every epoch
    (3600, [], [0, 3]),                        # the first, then none until the last epoch
    (3600, ["callbacks.early_stopping.patience=0", "monitor_mode=max"], [0, 1]),  # early stopping ends it at epoch 1
])
def test_last_checkpoint_at_most_once_per_interval_and_always_at_the_end(tmp_path, monkeypatch, interval, stop, written):
    import seqgen.train as train_mod

    real, epochs = train_mod._write_atomically, []

    def spy(data, path):
        if path.name == "last.ckpt":
            data.seek(0)
            epochs.append(torch.load(data, map_location="cpu", weights_only=True)["epoch"])
        real(data, path)

    monkeypatch.setattr(train_mod, "_write_atomically", spy)
    run(make_cfg(tmp_path, [*TINY, "trainer.max_epochs=4", "trainer.limit_train_batches=2", "test=false",
                            f"callbacks.last_checkpoint.min_interval_s={interval}", *stop]))
    assert epochs == written
    last = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert last["epoch"] == written[-1]


def test_loss_curve_has_one_validation_point_per_epoch(tmp_path):
    run(make_cfg(tmp_path, [*TINY, "trainer.max_epochs=2", "trainer.limit_train_batches=3"]))
    rows = (tmp_path / "run" / "plots" / "loss.csv").read_text().splitlines()[1:]
    val = [r.split(",") for r in rows if r.startswith("val/loss")]
    assert [int(s) for _, s, _ in val] == [3, 6], val  # recorded after epochs 1 and 2, at their steps
    import csv

    with open(tmp_path / "run" / "metrics.csv") as f:
        logged = [float(r["val/loss"]) for r in csv.DictReader(f) if r.get("val/loss")]
    assert [float(v) for _, _, v in val] == pytest.approx(logged)  # this epoch's value, not the previous one


def test_extra_callbacks_join_the_configured_ones(tmp_path):
    from seqgen.callbacks import Throughput

    timer = Throughput(warmup=1)
    metrics = run(make_cfg(tmp_path, [*TINY, "trainer.max_epochs=1", "trainer.limit_train_batches=4"]), extra_callbacks=[timer])
    assert timer.steps == 3 and timer.items_per_sec > 0 and metrics["perf/steps_per_sec"] > 0


def test_throughput_tells_the_time_between_steps_from_the_time_in_them(tmp_path):
    """``Throughput.between_steps_ms``: the time outside the training steps (here an epoch end that
    sleeps 60 ms) per timed step; a step that sleeps 300 ms counts in the steps, not between them."""
    import time

    from seqgen.callbacks import Throughput

    class Slow(L.Callback):
        def on_train_epoch_end(self, trainer, pl_module):
            time.sleep(0.06)

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            if trainer.current_epoch == 1 and batch_idx == 0:
                time.sleep(0.3)

    timer = Throughput(warmup=1, log_rates=False)
    run(make_cfg(tmp_path, [*TINY, "trainer.max_epochs=2", "trainer.limit_train_batches=4"]), extra_callbacks=[timer, Slow()])
    between = timer.elapsed - timer.in_steps
    assert timer.steps == 7 and 0.06 <= between < 0.3 and timer.in_steps >= 0.3
    assert timer.between_steps_ms == pytest.approx(1000 * between / 7)


def test_throughput_counts_the_steps_a_group_cut_by_max_steps_made(tmp_path):
    """With steps per execution, a group that max_steps cuts short trains on its first micro-batches
    only; the timer counts those (it counted the whole group, 16 steps for 12 here)."""
    from seqgen.callbacks import Throughput

    timer = Throughput(warmup=0, log_rates=False)
    run(make_cfg(tmp_path, ["task=digits_mlp", "data.batch_size=32", "steps_per_execution=8", "trainer.max_steps=12",
                            "trainer.max_epochs=-1",
                            "callbacks.progress_bar=null", "trainer.enable_model_summary=false", "test=false"]),
        extra_callbacks=[timer])
    assert timer.steps == 12 and timer.items == 12 * 32


def test_throughput_leaves_validation_time_out(tmp_path):
    import time

    import lightning as L

    from seqgen.callbacks import Throughput

    class SlowValidation(L.Callback):
        def on_validation_epoch_end(self, trainer, pl_module):
            if not trainer.sanity_checking:
                time.sleep(0.3)

    class PausedAtLastBatch(L.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            self.paused = train_only.paused

    train_only, wall = Throughput(warmup=1, log_rates=False), Throughput(warmup=1, exclude_validation=False, log_rates=False)
    probe = PausedAtLastBatch()
    metrics = run(make_cfg(tmp_path, [*TINY, "trainer.max_epochs=3", "trainer.limit_train_batches=3"]),
                  extra_callbacks=[SlowValidation(), train_only, wall, probe])
    assert not any(k.startswith("perf/") for k in metrics)  # timers only: they log nothing
    assert train_only.steps == wall.steps == 8 and wall.paused == 0.0
    # two validations fall between timed batches (after epochs 0 and 1): the wall-clock timer counts
    # them, the training-only one leaves them out; the third comes after the last batch
    assert probe.paused >= 0.6 and train_only.paused >= probe.paused + 0.3
    assert wall.elapsed - train_only.elapsed == pytest.approx(probe.paused, abs=0.02)


@pytest.mark.parametrize("level,tokenizer", [("char", []), ("word", []),
                                             ("sentencepiece", ["+data.tokenizer.vocab_size=60",
                                                                "+data.tokenizer.model_type=unigram"])])
def test_only_character_models_report_bits_per_character(tmp_path, level, tokenizer):
    """The data module's level reaches the model: word and subword LMs report loss and ppl, never
    ``bpc`` (their loss in bits would be bits per *token*)."""
    import fixtures

    text = tmp_path / "corpus.txt"
    text.write_text("\n".join(fixtures._sentences(300, 7, unk=False)) + "\n")
    cfg = make_cfg(tmp_path, ["task=char_lm", "data=text_files", f"data.train={text}", f"data.level={level}",
                              *tokenizer, f"paths.data_dir={tmp_path / 'cache'}", "data.batch_size=4", "data.bptt=20",
                              "monitor=val/ppl", "optimized_metric=val/ppl", *TINY[:-3], "trainer.max_epochs=1",
                              "trainer.limit_train_batches=2", "trainer.limit_val_batches=2", "trainer.limit_test_batches=2",
                              "callbacks.progress_bar=null", "callbacks.text_samples.max_new_tokens=5"])
    metrics = run(cfg)
    assert {"val/ppl", "test/ppl", "test/loss"} <= metrics.keys()
    assert math.isclose(metrics["test/ppl"], math.exp(metrics["test/loss"]), rel_tol=1e-5)
    bpc = {k for k in metrics if k.endswith("/bpc")}
    if level == "char":
        assert bpc == {"val/bpc", "test/bpc"}
        assert math.isclose(metrics["test/bpc"], metrics["test/loss"] / math.log(2), rel_tol=1e-5)
    else:
        assert not bpc, metrics
    model = LanguageModel.load_from_checkpoint(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True)
    assert model.level == level


@pytest.mark.slow
def test_ckpt_path_last_resumes_the_newest_run_of_the_task(tmp_path):
    """``ckpt_path=last``: the newest ``<log_dir>/<task>/*/checkpoints/last.ckpt`` of another run;
    training continues from its epoch (a resumed run does not start again at epoch 0)."""
    import os

    log = tmp_path / "outputs"

    def cfg(name, extra):
        c = make_cfg(tmp_path / name, ["task=digits_mlp", "callbacks.progress_bar=null", "logger=none",
                                       "trainer.enable_model_summary=false", "trainer.limit_train_batches=3", *extra])
        c.paths.log_dir, c.paths.output_dir = str(log), str(log / "digits_mlp" / name)
        return c

    with pytest.raises(CheckpointError, match="no .*digits_mlp/\\*/checkpoints/last.ckpt"):
        run(cfg("first", ["trainer.max_epochs=1", "ckpt_path=last"]))
    run(cfg("older", ["trainer.max_epochs=1"]))
    run(cfg("newer", ["trainer.max_epochs=2"]))
    older, newer = (log / "digits_mlp" / n / "checkpoints" / "last.ckpt" for n in ("older", "newer"))
    os.utime(older, (1, 1))  # make "newest" unambiguous whatever the file system's time resolution
    resumed = cfg("resumed", ["trainer.max_epochs=3", "ckpt_path=last"])
    run(resumed)
    end = torch.load(log / "digits_mlp" / "resumed" / "checkpoints" / "last.ckpt", weights_only=True)
    start = torch.load(newer, weights_only=True)
    assert start["epoch"] == 1 and end["epoch"] == 2  # one more epoch on top of the newer run's two
    assert end["global_step"] == start["global_step"] + 3


def test_resuming_a_finished_run_says_so_tests_and_succeeds(tmp_path, capsys):
    """``ckpt_path=<a run that reached max_epochs>``: nothing to train; its best checkpoint is tested,
    the console says why, and there is no error for the missing validation metric."""
    from seqgen.train import optimized_value

    quiet = ["task=digits_mlp", "trainer.max_epochs=1", "callbacks.progress_bar=null", "logger=none",
             "trainer.enable_model_summary=false"]
    first = run(make_cfg(tmp_path / "a", quiet))
    cfg = make_cfg(tmp_path / "b", [*quiet, f"ckpt_path={tmp_path / 'a' / 'run'}"])
    again = run(cfg)
    assert "that run is complete (epoch 1" in capsys.readouterr().out
    assert again["test/acc"] == first["test/acc"]  # the same best checkpoint, tested again
    assert not any(k.startswith(("train/", "val/")) for k in again)
    assert optimized_value(cfg, again) is None  # scripts/train.py then exits 0
    assert optimized_value(make_cfg(tmp_path / "c", quiet), first) == first["val/acc"]


@pytest.mark.parametrize("native", [False, True])
def test_precision_auto_is_bf16_only_where_the_hardware_has_it(tmp_path, monkeypatch, capsys, native):
    """``trainer.precision=auto`` (the bf16 recipes): bf16-mixed where the CPU has bf16 units, 32-true
    where bf16 would be emulated (several times slower than fp32); the choice is said and logged."""
    import seqgen.nets.hardware as hardware

    monkeypatch.setattr(hardware, "cpu_has_bf16", lambda: native)
    seen = {}

    class Precision(L.Callback):
        def on_train_start(self, trainer, pl_module):
            seen["precision"] = trainer.precision
            seen["autocast"] = torch.is_autocast_enabled("cpu")

    run(make_cfg(tmp_path, ["task=digits_mlp", "trainer.precision=auto", "trainer.max_epochs=1",
                            "trainer.limit_train_batches=2", "logger=csv", "test=false"]), extra_callbacks=[Precision()])
    expected = "bf16-mixed" if native else "32-true"
    assert seen["precision"] == expected
    assert f"trainer.precision=auto: {expected}" in capsys.readouterr().out
    assert f"precision: {expected}" in (tmp_path / "run" / "hparams.yaml").read_text()
    assert hardware.auto_precision("cpu") == expected and hardware.auto_precision("mps") == "32-true"


def test_no_progress_bar_configured_means_none(tmp_path):
    """``callbacks.progress_bar=null``: no bar at all (Lightning would otherwise add its own default
    one, which reads its values and redraws at every step); seqgen's bar by default."""
    from seqgen.callbacks import ProgressBar

    seen = {}

    class Look(L.Callback):
        def on_train_start(self, trainer, pl_module):
            seen.setdefault("bars", []).append(trainer.progress_bar_callback)

    fast = ["task=digits_mlp", "trainer.max_epochs=1", "trainer.limit_train_batches=2", "logger=none", "test=false"]
    run(make_cfg(tmp_path / "off", [*fast, "callbacks.progress_bar=null"]), extra_callbacks=[Look()])
    run(make_cfg(tmp_path / "on", fast), extra_callbacks=[Look()])
    assert seen["bars"][0] is None and isinstance(seen["bars"][1], ProgressBar)


@pytest.mark.parametrize("k", [1, 8])
def test_the_training_bar_counts_optimiser_steps_with_steps_per_execution(tmp_path, k):
    """With K batches a training step the bar's total and position are batches (optimiser steps),
    not groups: an epoch of 12 batches in groups of 8 and 4 reads 8/12 then 12/12 (it read 1/2, 2/2);
    at K=1 it is Lightning's count; ``max_steps`` bounds the total as Lightning bounds it."""
    from seqgen.callbacks import ProgressBar

    class Record(ProgressBar):
        def __init__(self):
            super().__init__(refresh_rate=1)
            self.seen = []

        def _update(self, progress_bar_id, current, visible=True, hard=False):
            if progress_bar_id is not None and progress_bar_id == self.train_progress_bar_id:
                self.seen.append((self.trainer.current_epoch, current, self.progress.tasks[progress_bar_id].total))
            super()._update(progress_bar_id, current, visible, hard)

    fast = ["task=digits_mlp", "data.batch_size=32", "trainer.limit_train_batches=12", "logger=none", "test=false",
            "callbacks.progress_bar=null", "trainer.enable_model_summary=false", f"steps_per_execution={k}"]
    bar = Record()
    run(make_cfg(tmp_path / "epochs", [*fast, "trainer.max_epochs=2"]), extra_callbacks=[bar])
    expected = [(0, 8, 12), (0, 12, 12), (1, 8, 12), (1, 12, 12)] if k == 8 else \
        [(e, i, 12) for e in (0, 1) for i in range(1, 13)]
    assert bar.seen == expected
    bar = Record()  # 20 steps: the second epoch's bar holds the 8 that max_steps leaves
    run(make_cfg(tmp_path / "steps", [*fast, "trainer.max_epochs=-1", "trainer.max_steps=20"]), extra_callbacks=[bar])
    assert bar.seen[-1] == (1, 8, 8)


def test_the_speed_column_reads_a_rate_from_one_update():
    """The bar's speed: rich's own estimate where it has one; from a single update (an epoch of one
    group, a validation of one batch) the average since the bar started, on a finished bar up to the
    moment it filled (it read 0.00it/s)."""
    from types import SimpleNamespace

    from seqgen.callbacks.runtime import speed_column

    column = speed_column("none")
    render = lambda **task: column.render(SimpleNamespace(**task)).plain  # noqa: E731
    assert render(speed=250.0, completed=41, finished_time=None, elapsed=9.0) == "250.00it/s"
    assert render(speed=None, completed=41, finished_time=0.05, elapsed=3.0) == "820.00it/s"
    assert render(speed=None, completed=10, finished_time=None, elapsed=2.0) == "5.00it/s"
    assert render(speed=None, completed=0, finished_time=None, elapsed=None) == "0.00it/s"


def test_rng_state_round_trips_through_a_safe_load_and_reads_the_older_form():
    """``EpochSeed``'s checkpointed RNG state: torch, numpy and Python's ``random`` continue exactly
    after a ``weights_only=True`` load; Python's state words are one tensor (625 objects to pickle at
    every checkpoint before), and a checkpoint holding them as a tuple still loads."""
    import io
    import random

    import numpy as np

    from seqgen.callbacks.runtime import rng_state, set_rng_state

    random.seed(3), np.random.seed(3), torch.manual_seed(3)
    state = rng_state()
    expected = (random.random(), float(np.random.rand()), float(torch.rand(())))
    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    set_rng_state(torch.load(buf, weights_only=True))
    assert (random.random(), float(np.random.rand()), float(torch.rand(()))) == expected
    version, words, gauss = state["python"]
    assert isinstance(words, torch.Tensor) and words.numel() == 625
    set_rng_state({**state, "python": (version, tuple(words.tolist()), gauss)})
    assert random.random() == expected[0]


def test_epoch_seeding_leaves_every_rng_as_lightnings_seed_everything_does(monkeypatch):
    """``EpochSeed`` seeds each epoch with ``seed_all``: Python's, NumPy's and torch's generators and
    Lightning's two variables end as ``seed_everything(workers=True)`` leaves them; on a CPU run it
    never formats a Python stack for devices that were not started (torch.manual_seed's lazy calls)."""
    import os
    import random
    import traceback

    import lightning as L
    import numpy as np

    from seqgen.callbacks.runtime import seed_all

    def draws():
        return (random.random(), float(np.random.rand()), torch.rand(3).tolist(), os.environ["PL_GLOBAL_SEED"],
                os.environ["PL_SEED_WORKERS"])

    monkeypatch.setenv("PL_GLOBAL_SEED", "0")
    monkeypatch.setenv("PL_SEED_WORKERS", "0")
    L.seed_everything(1234 + 5, workers=True, verbose=False)
    expected = draws()
    torch.rand(7), random.random(), np.random.rand()  # move every stream on
    calls = []
    monkeypatch.setattr(traceback, "format_stack", lambda *a, **k: calls.append(1) or [])
    seed_all(1234 + 5)
    assert draws() == expected
    assert calls == [] or torch.cuda.is_initialized()


def test_checkpoint_monitor_candidates_equal_lightnings_and_are_copies():
    """RunCheckpoint copies the logged values with Tensor.clone instead of deepcopy: the same keys,
    values and dtypes as Lightning's ModelCheckpoint gives, and later changes to the logged tensors
    do not reach them; a value that is not a tensor takes Lightning's own path."""
    from types import SimpleNamespace

    from lightning.pytorch.callbacks import ModelCheckpoint

    from seqgen.callbacks import RunCheckpoint

    for metrics in ({"val/loss": torch.tensor(0.25), "train/loss": torch.tensor([1.5]), "epoch": torch.tensor(3.0)},
                    {"val/acc": torch.tensor(0.9, dtype=torch.float64)},
                    {"val/loss": torch.tensor(0.5), "note": 1.0}):
        trainer = SimpleNamespace(callback_metrics=metrics, current_epoch=7, global_step=42)
        ours = RunCheckpoint(monitor="val/loss")._monitor_candidates(trainer)
        theirs = ModelCheckpoint(monitor="val/loss")._monitor_candidates(trainer)
        assert ours.keys() == theirs.keys()
        for k in theirs:
            assert type(ours[k]) is type(theirs[k])
            if isinstance(theirs[k], torch.Tensor):
                assert ours[k].dtype == theirs[k].dtype and torch.equal(ours[k], theirs[k]), k
            else:
                assert ours[k] == theirs[k]
        before = {k: v.clone() for k, v in ours.items() if isinstance(v, torch.Tensor)}
        for v in metrics.values():
            if isinstance(v, torch.Tensor):
                v.add_(1)
        assert all(torch.equal(ours[k], v) for k, v in before.items())


@pytest.mark.parametrize("limit", ["max_epochs", "max_steps"])
def test_throughput_waits_for_a_cuda_device_only_where_a_span_ends(tmp_path, limit):
    """On a CUDA device the timer waits for the queued work (``torch.cuda.synchronize``) when the clock
    starts, around each validation and at the run's last step, and at no other step: the steps it times
    keep their overlap of host and device. Here the module is taken for a CUDA one and the waits recorded
    with the timed step count at each."""
    import sys

    from seqgen.callbacks import Throughput

    class OnCuda(Throughput):
        def __init__(self):
            super().__init__(warmup=1, log_rates=False)
            self.waits = []

        @staticmethod
        def _on_cuda(pl_module):
            return True

        def _drain(self, pl_module):
            assert self._cuda
            self.waits.append((sys._getframe(1).f_code.co_name, self.steps))

    timer = OnCuda()
    ends = ["trainer.max_epochs=2"] if limit == "max_epochs" else ["trainer.max_epochs=-1", "trainer.max_steps=6"]
    run(make_cfg(tmp_path, [*TINY, "trainer.limit_train_batches=4", *ends]), extra_callbacks=[timer])
    last = 7 if limit == "max_epochs" else 5  # timed steps: all but the first
    assert timer.steps == last
    assert timer.waits[:3] == [("on_train_batch_start", 0), ("on_validation_start", 3), ("on_validation_end", 3)]
    assert [w for w in timer.waits if w[0] == "on_train_batch_end"] == [("on_train_batch_end", last)]
    assert all(name.startswith("on_validation") for name, _ in timer.waits[4:])


def test_the_final_table_shows_a_value_once_and_metrics_json_keeps_every_name(tmp_path, capsys):
    """A value logged per step and per epoch reaches the final metrics as x, x_step and x_epoch: the
    printed table shows x; metrics.json keeps all three; a lone x_step (no x) is still shown."""
    import json

    from seqgen.train import _report

    metrics = {"train/loss": 1.5, "train/loss_epoch": 1.5, "train/loss_step": 1.25, "val/loss": 2.0, "g/acc_step": 0.5}
    _report(metrics, tmp_path, "a_long_task_name: final metrics")  # wider than the columns: on one line still
    shown = capsys.readouterr().out
    assert "a_long_task_name: final metrics" in shown
    assert "train/loss " in shown and "val/loss" in shown and "g/acc_step" in shown
    assert "train/loss_step" not in shown and "train/loss_epoch" not in shown
    assert json.loads((tmp_path / "metrics.json").read_text()) == metrics
