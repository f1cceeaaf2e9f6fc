"""The command line: scripts/train.py (single process and DDP on CPU) and scripts/generate.py."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from conftest import ROOT, run_cli, run_script

TRAIN = str(ROOT / "scripts" / "train.py")
GENERATE = str(ROOT / "scripts" / "generate.py")
SMALL = ["model.net.hidden_size=48", "model.net.embedding_dim=16", "model.net.num_layers=1", "data.batch_size=8",
         "data.bptt=32", "trainer.limit_train_batches=8", "trainer.limit_val_batches=3", "trainer.limit_test_batches=3",
         "callbacks.text_samples.max_new_tokens=40", "trainer.enable_model_summary=false"]

pytestmark = pytest.mark.cli


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("cli")
    proc = run_cli([TRAIN, "trainer.max_epochs=1", *SMALL], cwd)
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = list((cwd / "outputs" / "char_lm").iterdir())
    assert len(runs) == 1
    return runs[0], proc


@pytest.mark.slow
def test_train_cli_writes_run_folder(trained_run):
    run_dir, proc = trained_run
    for rel in (".hydra/config.yaml", ".hydra/overrides.yaml", "checkpoints/last.ckpt", "metrics.csv", "metrics.json",
                "plots/loss.png", "samples/epoch_000.txt", "samples/final.txt"):
        assert (run_dir / rel).is_file(), rel
    assert "test/bpc" in proc.stdout and "final metrics" in proc.stdout
    assert "val/bpc" in (run_dir / "metrics.csv").read_text().splitlines()[0]


@pytest.mark.slow
def test_generate_cli_prints_and_saves(trained_run, tmp_path):
    run_dir, _ = trained_run
    out = tmp_path / "gen.txt"
    proc = run_cli([GENERATE, f"ckpt={run_dir}", "prompt=def ", "max_new_tokens=50", "num_samples=2",
                       "temperature=0.9", "top_p=0.9", f"out={out}"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    text = out.read_text()
    assert text.count("def ") >= 2 and "--- sample 1 ---" in proc.stdout
    assert len(text) > 2 * 50


def _script_main(path: str):
    """``main(argv)`` of a script file, called in-process: the same argument parsing, error
    messages and exit status as the command line, without a new interpreter per case (one real
    process per script is in the tests around these)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"_script_{Path(path).stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


@pytest.mark.parametrize("args,message", [
    (["prompt="], "prompt is empty"),
    (["prompt=漢字"], "outside the model's vocabulary"),
    (["temperature=0"], "temperature"),
    (["tempreature=1"], "unknown argument 'tempreature'"),
])
@pytest.mark.slow
def test_generate_cli_bad_input(trained_run, tmp_path, args, message, capsys):
    run_dir, _ = trained_run
    before = sorted((run_dir / "samples").iterdir())
    rc = _script_main(GENERATE)([f"ckpt={run_dir}", *args])
    err = capsys.readouterr().err
    assert rc == 2 and message in err, err
    assert sorted((run_dir / "samples").iterdir()) == before, "a failed call left output behind"


@pytest.mark.slow
def test_generate_cli_bad_checkpoints(trained_run, tmp_path, capsys):
    run_dir, _ = trained_run
    proc = run_script([GENERATE, f"ckpt={tmp_path}/missing.ckpt"], tmp_path)  # one through a real process
    assert proc.returncode == 2 and "not found" in proc.stderr
    main = _script_main(GENERATE)
    truncated = tmp_path / "trunc.ckpt"
    truncated.write_bytes((run_dir / "checkpoints" / "last.ckpt").read_bytes()[:5000])
    assert main([f"ckpt={truncated}"]) == 2 and "truncated or corrupt" in capsys.readouterr().err
    other = tmp_path / "other.ckpt"
    torch.save({"state_dict": {}, "seqgen": {"task": "x", "model_class": "Classifier"}}, other)
    assert main([f"ckpt={other}"]) == 2 and "not a seqgen language-model checkpoint" in capsys.readouterr().err


@pytest.mark.slow
def test_console_prints_each_event_once_without_adverts_or_library_noise(tmp_path):
    proc = run_script([TRAIN, "task=digits_mlp", "trainer.max_epochs=1", "callbacks.progress_bar=null"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [ln.strip() for ln in (proc.stdout + proc.stderr).splitlines() if ln.strip()]
    events = [ln for ln in lines if ln.startswith(("GPU available", "`Trainer.fit` stopped", "Loaded model weights"))]
    assert len(events) == 3 and len(set(events)) == 3, events  # each Lightning event once (not once per handler)
    text = "\n".join(lines)
    for noise in ("Tip:", "FLOPs", "TPU available", "Warning", "deprecated", "exists and is not empty",
                  "does not have many workers", "Test metric"):
        assert noise not in text, (noise, text[-3000:])
    assert "trainable parameters" in text and "digits_mlp: final metrics" in text  # the summary and our table
    assert not proc.stderr.strip(), proc.stderr  # nothing went wrong, so nothing on stderr
    log = next((tmp_path / "outputs" / "digits_mlp").glob("*/train.log")).read_text()
    assert "[INFO] - GPU available" in log  # the run folder's log keeps time and logger name


@pytest.mark.slow
def test_train_cli_unknown_task_and_typo(tmp_path):
    proc = run_cli([TRAIN, "task=char_llm"], tmp_path)
    assert proc.returncode != 0 and "char_lm" in proc.stderr and "Available options" in proc.stderr
    proc = run_cli([TRAIN, "trainer.max_epoch=1"], tmp_path)
    assert proc.returncode != 0 and "max_epoch" in proc.stderr
    proc = run_cli([TRAIN, "data.batch_size=-4"], tmp_path)
    assert proc.returncode == 2 and "data.batch_size must be a positive integer" in proc.stderr
    proc = run_cli([TRAIN, "task=digits_mlp", "+model.net.dropuot=0.5"], tmp_path)  # a key no constructor takes
    assert proc.returncode == 2 and "error: unknown key model.net.dropuot for seqgen.nets.MLP" in proc.stderr
    assert not list(tmp_path.rglob("*.ckpt"))


@pytest.mark.slow
def test_train_cli_ddp_cpu_two_processes(tmp_path):
    proc = run_cli([TRAIN, "trainer=ddp_cpu", "trainer.devices=2", "trainer.max_epochs=1", *SMALL,
                       "callbacks.progress_bar=null"], tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    runs = list((tmp_path / "outputs" / "char_lm").iterdir())
    assert len(runs) == 1, f"DDP made more than one run folder: {runs}"
    run_dir = runs[0]
    assert (run_dir / "checkpoints" / "last.ckpt").is_file() and (run_dir / "metrics.json").is_file()
    out = proc.stdout + proc.stderr  # Lightning's INFO lines go through Hydra's console handler (stdout)
    assert "world_size: 2" in out or "distributed_backend=gloo" in out


@pytest.mark.slow
def test_grid_multirun_and_sweep_report(tmp_path):
    proc = run_cli([TRAIN, "-m", "task=digits_mlp", "trainer=debug", "callbacks.progress_bar=null",
                       "model.optimizer.lr=0.01,0.001"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    sweeps = list((tmp_path / "outputs" / "digits_mlp").glob("multirun_*"))
    assert len(sweeps) == 1
    rep = run_cli([str(ROOT / "scripts" / "sweep_report.py"), str(sweeps[0])], tmp_path)
    assert rep.returncode == 0, rep.stderr
    lines = (sweeps[0] / "sweep.csv").read_text().splitlines()
    assert len(lines) == 3 and "model.optimizer.lr" in lines[0] and "val/acc" in lines[0]
    accs = [float(row.split(",")[lines[0].split(",").index("val/acc")]) for row in lines[1:]]
    assert accs == sorted(accs, reverse=True)  # best first
    assert (sweeps[0] / "sweep.png").read_bytes()[:4] == b"\x89PNG"


# task: (overrides for both runs, overrides for the single-process evaluation only, {metric: tolerance})
DDP_FAMILIES = {
    # truncated-BPTT rows: 2 ranks x 4 rows == 1 process x 8 rows, the same streams, the same states
    "char_lm": (["model.net.hidden_size=32", "model.net.embedding_dim=16", "model.net.num_layers=1", "data.batch_size=8",
                 "data.eval_batch_size=4", "data.bptt=32", "trainer.limit_val_batches=3", "trainer.limit_test_batches=3",
                 "callbacks.text_samples=null"], ["data.eval_batch_size=8"], {"test/loss": 1e-5, "test/bpc": 1e-5}),
    "adding_lstm": ([], [], {"test/loss": 1e-6}),  # fixed test set, sharded by the distributed sampler
    # bucketed evaluation examples dealt one each to the ranks, translations gathered: the same corpus
    "dates_attn": (["data.num_train=2000", "data.num_eval=201"], [], {"test/exact_match": 0.0, "test/bleu": 1e-3}),
    # the VAE draws its own noise on each rank: equal within the Monte Carlo error, plus the one test
    # image the distributed sampler pads. Measured on one checkpoint: single-process seeds 1-3 gave
    # IWAE NLL 42.176-42.209 and ELBO -42.49 to -42.59 nats; 2 ranks 42.177 and -42.55
    "digits_vae": (["model.iwae_k=50"], [], {"test/nll_iwae": 0.1, "test/elbo": 0.3}),
}


@pytest.mark.slow
@pytest.mark.parametrize("task", sorted(DDP_FAMILIES))
def test_ddp_cpu_trains_and_evaluates_like_one_process(tmp_path, task):
    """Each family trained under 2 gloo processes through the command line (LM: contiguous streams
    per rank; SequenceModel: per-rank generated batches; Translator: bucketed batches sharded by
    the data module; VAE: manual noise); then the same checkpoint evaluated in one process
    (in-process): the test metrics the 2 ranks synchronised equal the single-process ones."""
    import json

    from conftest import make_cfg
    from seqgen.train import run

    both, single_only, tolerances = DDP_FAMILIES[task]
    common = [f"task={task}", "trainer.max_epochs=1", "trainer.limit_train_batches=5", "callbacks.progress_bar=null",
              "trainer.enable_model_summary=false", *both]
    proc = run_cli([TRAIN, *common, "trainer=ddp_cpu", "trainer.devices=2", f"hydra.run.dir={tmp_path / 'ddp'}"],
                      tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    ddp = json.loads((tmp_path / "ddp" / "metrics.json").read_text())
    single = run(make_cfg(tmp_path / "single", [*common, *single_only, "train=false", f"ckpt_path={tmp_path / 'ddp'}",
                                                "logger=none"]))
    for metric, tol in tolerances.items():
        assert abs(ddp[metric] - single[metric]) <= tol, (metric, ddp[metric], single[metric])
    if task == "dates_attn":  # both ranks' halves of the odd-sized test set, each sentence once, in file order
        rows = (tmp_path / "ddp" / "translations" / "test.tsv").read_text(encoding="utf-8").splitlines()[1:]
        from seqgen.data import date_pairs

        assert [r.split("\t")[0] for r in rows] == date_pairs(201, seed=1)[0]


@pytest.mark.slow
def test_ddp_cpu_gan_steps_both_optimisers_once_per_batch_on_each_rank(tmp_path):
    """Manual optimisation under DDP (find_unused_parameters): 5 batches per rank give 5 discriminator
    and 5 generator steps, the same counts as one process, and both ranks end with the same weights."""
    proc = run_cli([TRAIN, "task=digits_gan", "trainer=ddp_cpu", "trainer.devices=2", "trainer.max_epochs=1",
                       "trainer.limit_train_batches=5", "callbacks.progress_bar=null", "trainer.enable_model_summary=false",
                       "model.eval_samples=100", f"hydra.run.dir={tmp_path / 'ddp'}"], tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    ckpt = torch.load(tmp_path / "ddp" / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["global_step"] == 10  # Lightning counts both optimisers' steps
    steps = [{float(s["step"]) for s in opt["state"].values()} for opt in ckpt["optimizer_states"]]
    assert steps == [{5.0}, {5.0}], steps
    import json

    metrics = json.loads((tmp_path / "ddp" / "metrics.json").read_text())
    assert metrics["test/fd_pixels"] == metrics["test/fd_pixels"]  # logged, not NaN


@pytest.mark.slow
def test_optuna_sweep_three_trials_and_report(tmp_path):
    proc = run_cli([TRAIN, "-m", "task=digits_mlp", "hparams_search=digits_mlp_optuna", "trainer=debug",
                       "hydra.sweeper.n_trials=3", "callbacks.progress_bar=null"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    sweep = next((tmp_path / "outputs" / "digits_mlp").glob("multirun_*"))
    assert (sweep / "optimization_results.yaml").is_file()
    rep = run_cli([str(ROOT / "scripts" / "sweep_report.py"), str(sweep)], tmp_path)
    assert rep.returncode == 0, rep.stderr
    assert len((sweep / "sweep.csv").read_text().splitlines()) == 4 and (sweep / "sweep.png").is_file()


@pytest.mark.slow
def test_submitit_local_multirun_two_jobs(tmp_path):
    proc = run_script([TRAIN, "-m", "hydra/launcher=submitit_local", "task=digits_mlp", "trainer=debug",
                       "callbacks.progress_bar=null", "model.optimizer.lr=0.01,0.001"], tmp_path, timeout=400)
    assert proc.returncode == 0, proc.stderr[-3000:]
    sweep = next((tmp_path / "outputs" / "digits_mlp").glob("multirun_*"))
    assert sorted(p.name for p in sweep.glob("[0-9]")) == ["0", "1"]
    assert all((sweep / j / "metrics.json").is_file() for j in ("0", "1"))


@pytest.mark.slow
def test_ddp_test_metrics_equal_single_process(tmp_path):
    """Evaluate one checkpoint on the digits test set in 1 process and in 2 gloo processes: the
    torchmetrics accuracy synchronised across ranks matches (the distributed sampler pads 359
    test images to 360, so at most one duplicated image separates them)."""
    import json

    proc = run_cli([TRAIN, "task=digits_mlp", "trainer.max_epochs=2", "callbacks.progress_bar=null", "test=false"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    source = next((tmp_path / "outputs" / "digits_mlp").iterdir())
    results = {}
    for name, extra in (("single", []), ("ddp", ["trainer=ddp_cpu", "trainer.devices=2"])):
        out = tmp_path / name
        proc = run_cli([TRAIN, "task=digits_mlp", "train=false", f"ckpt_path={source}", "callbacks.progress_bar=null",
                           f"hydra.run.dir={out}", *extra], tmp_path, timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
        results[name] = json.loads((out / "metrics.json").read_text())
    assert results["single"]["test/acc"] > 0.8
    assert abs(results["ddp"]["test/acc"] - results["single"]["test/acc"]) <= 1.5 / 359
    assert abs(results["ddp"]["test/loss"] - results["single"]["test/loss"]) < 0.02


@pytest.mark.slow
def test_deterministic_runs_put_mkl_in_strict_reproducible_mode(tmp_path):
    """trainer.deterministic=true sets MKL_CBWR=AUTO,STRICT before the first matmul: every MKL call of
    the run reports CNR mode (MKL_VERBOSE prints one line per call)."""
    args = [TRAIN, "task=digits_mlp", "trainer.max_epochs=1", "trainer.limit_train_batches=2", "trainer.limit_val_batches=1",
            "test=false", "callbacks.progress_bar=null", "logger=none", f"hydra.run.dir={tmp_path / 'run'}"]
    det = run_script([*args, "trainer.deterministic=true"], tmp_path, env={"MKL_VERBOSE": "1"})
    assert det.returncode == 0, det.stderr[-3000:]
    calls = [line for line in det.stdout.splitlines() if line.startswith("MKL_VERBOSE") and "CNR:" in line]
    assert calls and all("CNR:AUTO,STRICT" in line for line in calls)


def test_reproducible_blas_leaves_a_users_choice_alone():
    from omegaconf import OmegaConf

    from seqgen.train import reproducible_blas

    on, off = OmegaConf.create({"trainer": {"deterministic": True}}), OmegaConf.create({"trainer": {"deterministic": False}})
    env: dict[str, str] = {}
    assert reproducible_blas(on, env) and env == {"MKL_CBWR": "AUTO,STRICT"}
    env = {"MKL_CBWR": "COMPATIBLE"}
    assert not reproducible_blas(on, env) and env == {"MKL_CBWR": "COMPATIBLE"}
    env = {}
    assert not reproducible_blas(off, env) and env == {}


@pytest.mark.slow
def test_ddp_cpu_steps_per_execution_make_the_same_updates_as_one(tmp_path):
    """Two gloo ranks, eight optimiser steps per training step: each inner backward is all-reduced
    as Lightning's own would be, so the weights equal those of one step per training step, bit for bit."""
    import torch

    weights = {}
    for k in (1, 8):
        out = tmp_path / f"k{k}"
        proc = run_cli([TRAIN, "task=digits_mlp", "trainer=ddp_cpu", "trainer.devices=2", "trainer.max_epochs=2",
                           "model.net.dropout=0.2", f"steps_per_execution={k}", "callbacks.progress_bar=null",
                           "trainer.enable_model_summary=false", "test=false", f"hydra.run.dir={out}"], tmp_path, timeout=300)
        assert proc.returncode == 0, proc.stderr[-4000:]
        ckpt = torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)
        weights[k] = (ckpt["global_step"], ckpt["state_dict"])
    (s1, w1), (s8, w8) = weights[1], weights[8]
    assert s1 == s8 > 8 and all(torch.equal(w1[name], w8[name]) for name in w1)
