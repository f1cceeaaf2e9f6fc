#!/usr/bin/env python
"""seqgen (Lightning + Hydra config + callbacks) versus a plain PyTorch loop, same process.

One task per family: the plain loop is the tightest hand-written loop of the same net (built from
the same config): every batch it uses read beforehand and kept in memory, the recipe's optimiser
built as seqgen builds it (fused) and its per-step LR schedule stepped as seqgen steps it,
``zero_grad(set_to_none=True)``, foreach clipping, the loss with
the same math, no ``.item()``, no logging, no hooks, no Lightning: char_lm (truncated BPTT),
digits_lenet (classifier, CNN), dates_attn (translator, Bahdanau attention), digits_vae (ELBO),
digits_gan (two optimisers). Both are timed over ``--steps`` steps (times ``STEP_SCALE``: the char LM an
eighth, the digits nets 4-8 times as many, so that a row's window lasts a second or more) after max(``--warmup``, K) (seqgen's
clock starts at the first group of K steps that begins after the warm-up, so that a first group
holding the cold first step is not timed; the plain loop leaves as many out). The table gives optimiser steps/s (training only; a GAN step is one D
and one G update) of the plain loop and of seqgen at K=1 and at the recipe's steps per execution,
their ratios, and the extra milliseconds seqgen spends per step at the recipe's K (Lightning's loop,
hooks and logging, and per-epoch checkpoints; validation is left out), of which "between groups" is
the time per step outside the training steps (epoch ends, checkpoints, an epoch's first read of the
loader: what a larger K cannot amortise), in fp32 and under bf16 autocast.

    python benchmarks/overhead.py [--tasks char_lm digits_lenet dates_attn digits_vae digits_gan]
        [--steps 160] [--precisions 32-true bf16-mixed] [--k 8] [--set paths.data_dir=../shared/data]
        [--repeat 3]   # medians of three alternated measurements, with the range of the ratio at K
        [--plain-lm-loss logits|fused]   # the plain LM loop's loss: classic full logits (default) or seqgen's fused one
        [--plain-update torch|lean]   # the plain loop's zero_grad and step: torch's calls (default) or seqgen's inner update's
    python benchmarks/overhead.py --tasks lm_multi30k_lstm --set paths.data_dir=../shared/data   # the word LM
"""

from __future__ import annotations

import argparse
import contextlib
import io
import itertools
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from common import QUIET, machine, make_cfg, table
from torch.utils._pytree import tree_map

from seqgen.callbacks import Throughput
from seqgen.models.execution import clear_grads, optimizer_step
from seqgen.nets import detach_state
from seqgen.train import build_datamodule, build_model, run

LM_LOSS = "logits"  # --plain-lm-loss: the classic decoder + F.cross_entropy, or seqgen's fused one
UPDATE = "torch"  # --plain-update: opt.zero_grad(set_to_none=True) / opt.step(), or seqgen's clear_grads / optimizer_step
# timed steps per task as a multiple of --steps: each row's window spans about a second or more
STEP_SCALE = {"char_lm": 1 / 8, "digits_vae": 8, "digits_lenet": 4, "digits_gan": 4, "mnist_vae": 4}


def _zero(opt) -> None:
    if UPDATE == "lean":  # what a group's inner update does (seqgen.models.execution)
        clear_grads(opt)
    else:
        opt.zero_grad(set_to_none=True)


def _step(opt) -> None:
    if UPDATE == "lean":
        optimizer_step(opt)
    else:
        opt.step()


def _lm_step(model, batch, state):
    x, y = batch
    if LM_LOSS == "fused":  # the loss seqgen's LanguageModel computes: seqgen.nets.losses.linear_cross_entropy
        loss, state = model.net(x, state, targets=y)
        return loss, detach_state(state)
    logits, state = model.net(x, state)  # as pytorch/examples' word_language_model writes it
    return F.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), y.reshape(-1)), detach_state(state)


def _classifier_step(model, batch, state):
    x, y = batch[0], batch[1]
    if len(model.augment):
        x = model.augment(x)
    logits = model.net(x, lengths=batch[2]) if len(batch) > 2 else model.net(x)  # text: host token counts
    return F.cross_entropy(logits.float(), y, label_smoothing=model.label_smoothing), None


def _translator_step(model, batch, state):
    tgt = batch["tgt"]
    logits = model.net(batch["src"], tgt[:, :-1], teacher_forcing=model.teacher_forcing, src_lengths=batch.get("src_lengths"))
    return F.cross_entropy(logits.float().reshape(-1, logits.size(-1)), tgt[:, 1:].reshape(-1), ignore_index=0,
                           label_smoothing=model.label_smoothing), None


def _vae_step(model, batch, state):
    rec, kl, _ = model.elbo_terms(batch[0])
    return (rec + model.beta * kl).mean(), None


STEPS = {"LanguageModel": _lm_step, "Classifier": _classifier_step, "Translator": _translator_step, "VAE": _vae_step}


def _optimizers(model, total_steps: int | None = None) -> tuple[list, list]:
    """The recipe's own optimiser(s), built as seqgen builds them (fused where torch has it), and its
    learning-rate scheduler when that one steps at every optimiser step (cosine, one-cycle over
    ``total_steps``), which the plain loop steps as seqgen does (an epoch-interval one steps once an
    epoch: the plain loop has no epochs and leaves it out)."""
    from seqgen.models.optim import build_scheduler

    schedule = getattr(model, "scheduler_cfg", None) or {"name": "none"}
    model.scheduler_cfg = {"name": "none"}
    opts = model.configure_optimizers()
    model.scheduler_cfg = schedule
    opts = opts if isinstance(opts, (list, tuple)) else [opts]
    opts = [o["optimizer"] if isinstance(o, dict) else o for o in opts]
    name, options = schedule.get("name", "none"), {k: v for k, v in schedule.items() if k != "name"}
    built = build_scheduler(opts[0], name, total_steps=total_steps, **options) if len(opts) == 1 and name != "none" else None
    return opts, [built["scheduler"]] if built and built["interval"] == "step" else []


def plain_loop(cfg, steps: int, warmup: int, precision: str, device: str = "cpu", compile: bool = False) -> float:
    """The tightest hand-written loop of the recipe's net: every batch it will use read beforehand
    and kept in memory, the recipe's optimiser (fused) and per-step LR schedule, ``zero_grad(set_to_none=True)``, foreach
    clipping, the loss as seqgen computes it, no ``.item()``, no logging, no hooks (with ``--plain-update lean``,
    the zero_grad and step of seqgen's inner updates instead of torch's calls)."""
    # the recipe's float32 matmul precision, as seqgen.train.run sets it (TF32 matmuls on a GPU): the
    # first plain loop of a process would otherwise run before any run() had set it
    torch.set_float32_matmul_precision(cfg.get("matmul_precision", "high"))
    dm = build_datamodule(cfg)
    dm.setup("fit")
    torch.manual_seed(cfg.seed)
    model = build_model(cfg, dm.dims).to(device)
    kind = type(model).__name__
    autocast = precision.startswith("bf16")
    dev = torch.device(device).type
    if compile and hasattr(model, "net"):
        model.net = torch.compile(model.net)
    clip = cfg.trainer.gradient_clip_val
    model.train()
    batches = []
    while len(batches) < steps + warmup:
        batches.extend(itertools.islice(dm.train_dataloader(), steps + warmup - len(batches)))
    batches = [tree_map(lambda t: t.to(device) if isinstance(t, torch.Tensor) else t, b) for b in batches]
    if kind == "GAN":
        (opt_g, opt_d), schedulers = _optimizers(model)
    else:
        (opt,), schedulers = _optimizers(model, total_steps=steps + warmup)
    params = [p for p in model.parameters() if p.requires_grad]
    state, t0 = None, 0.0
    for i, batch in enumerate(batches):
        if i == warmup:
            if dev == "cuda":
                torch.cuda.synchronize()  # the warm-up's queued kernels are not the timed steps'
            t0 = time.perf_counter()
        if kind == "GAN":  # one discriminator and one generator update, as GAN.training_step
            x, y = batch
            real, labels = x * 2 - 1, (y if model.conditional else None)
            with torch.autocast(dev, dtype=torch.bfloat16, enabled=autocast):
                fake = model.generator(torch.randn(x.size(0), model.latent_dim, device=device), labels).detach()
                d_loss = model.discriminator_loss(real, fake, labels)[0]
            _zero(opt_d)
            d_loss.backward()
            _step(opt_d)
            with torch.autocast(dev, dtype=torch.bfloat16, enabled=autocast):
                g_loss = model.generator_loss(model.generator(torch.randn(x.size(0), model.latent_dim, device=device), labels), labels)
            _zero(opt_g)
            g_loss.backward()
            _step(opt_g)
        else:
            with torch.autocast(dev, dtype=torch.bfloat16, enabled=autocast):
                loss, state = STEPS[kind](model, batch, state)
            _zero(opt)
            loss.backward()
            if clip:
                torch.nn.utils.clip_grad_norm_(params, clip, foreach=True)
            _step(opt)
            for scheduler in schedulers:  # the recipe's per-step schedule (LeNet's cosine), as seqgen steps it
                scheduler.step()
    if dev == "cuda":
        torch.cuda.synchronize()
    return steps / (time.perf_counter() - t0)


def seqgen_run(cfg, steps: int, warmup: int) -> Throughput:
    timer = Throughput(warmup=warmup, log_rates=False)  # a timer only: users' runs have no such callback
    run(cfg, extra_callbacks=[timer])
    return timer


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=160)
    ap.add_argument("--warmup", type=int, default=16)
    ap.add_argument("--precisions", nargs="+", default=["32-true", "bf16-mixed"])
    ap.add_argument("--tasks", nargs="+", default=["char_lm", "digits_lenet", "dates_attn", "digits_vae", "digits_gan"])
    ap.add_argument("--k", type=int, default=None, help="steps_per_execution for the seqgen column (default: the recipe's)")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                    help="extra overrides for every run, e.g. paths.data_dir=../shared/data")
    ap.add_argument("--repeat", type=int, default=1,
                    help="measure each row this many times (plain, K=1, K alternated) and report the medians of the "
                         "ratios, with the range of the ratio at K: on a machine whose speed drifts")
    ap.add_argument("--plain-update", choices=["torch", "lean"], default="torch",
                    help="the plain loop's update: opt.zero_grad(set_to_none=True) and opt.step() as users write them "
                         "(default), or the helpers seqgen's inner updates use (gradients set to None, a fused Adam's "
                         "kernels called directly): what is left is seqgen's loop, not its leaner update")
    ap.add_argument("--plain-lm-loss", choices=["logits", "fused"], default="logits",
                    help="the plain loop's LM loss: full logits + F.cross_entropy as pytorch/examples writes it "
                         "(default), or the fused decoder + loss that seqgen's LanguageModel uses")
    args = ap.parse_args()
    global LM_LOSS, UPDATE
    LM_LOSS, UPDATE = args.plain_lm_loss, args.plain_update
    if args.repeat < 1:
        ap.error("--repeat must be at least 1")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for task in args.tasks:
            # a step of the 2x512 char LSTM takes a quarter of a second: fewer of them; a digits step takes
            # 1-4 ms: more of them (160 of the VAE's were 0.15-0.2 s, four epochs, and one hiccup of the
            # machine moved the ratio by 0.2)
            steps = max(1, round(args.steps * STEP_SCALE.get(task, 1)))
            warmup = args.warmup // 4 if task == "char_lm" else args.warmup
            for prec in args.precisions:
                overrides = [f"task={task}", f"trainer.precision={prec}", "trainer.max_epochs=-1",
                             "trainer.limit_val_batches=2", "trainer.num_sanity_val_steps=0", "test=false", *QUIET]
                if task == "char_lm" or task.startswith("lm_"):
                    overrides.append("callbacks.text_samples=null")
                overrides += args.set
                cfg = make_cfg(Path(tmp) / f"{task}_{prec}", overrides)
                k = args.k or int(cfg.get("steps_per_execution", 1))
                # seqgen's clock starts at the first group that begins after the warm-up (a first group of
                # K >= warmup steps holds the cold first step): `steps` steps are timed after it, and the
                # plain loop leaves as many out before its `steps`. A GAN's Lightning global_step counts
                # both optimisers' steps
                lead = max(warmup, k)
                overrides.append(f"trainer.max_steps={(steps + lead) * (2 if task.endswith('gan') else 1)}")
                runs, between = [], []  # (plain, K=1, K) steps/s, one triple per repeat; ms/step between groups at K
                for r in range(args.repeat):
                    with contextlib.redirect_stdout(io.StringIO()):
                        plain = plain_loop(cfg, steps, lead, prec)
                        one = seqgen_run(make_cfg(Path(tmp) / f"{task}_{prec}_k1_{r}", [*overrides, "steps_per_execution=1"]),
                                         steps, warmup).steps_per_sec
                        timer = seqgen_run(make_cfg(Path(tmp) / f"{task}_{prec}_k{k}_{r}",
                                                    [*overrides, f"steps_per_execution={k}"]), steps, warmup)
                        ours = timer.steps_per_sec
                        plain = (plain + plain_loop(cfg, steps, lead, prec)) / 2  # again, to bracket drift
                    runs.append((plain, one, ours))
                    between.append(timer.between_steps_ms)
                    if args.repeat > 1:
                        print(f"  {task} {prec} run {r + 1}: plain {plain:.4g}, K=1 {one:.4g}, K={k} {ours:.4g} steps/s "
                              f"(ratio {ours / plain:.3f})", flush=True)
                plain, one, ours = (statistics.median(x) for x in zip(*runs))
                at_k = [o / p for p, _, o in runs]
                extra_ms = 1000 / ours - 1000 / plain  # the fixed cost per step that the ratio hides
                row = [task, prec, round(plain, 2), round(one, 2), round(statistics.median(o / p for p, o, _ in runs), 3), k,
                       round(ours, 2), round(statistics.median(at_k), 3), round(extra_ms, 2),
                       round(statistics.median(between), 2)]
                if args.repeat > 1:
                    row.append(f"{min(at_k):.3f}-{max(at_k):.3f}")
                rows.append(row)
                print(rows[-1], flush=True)
    header = ["task", "precision", "plain steps/s", "seqgen K=1", "ratio K=1", "K", "seqgen K", "ratio K", "extra ms/step",
              "between groups ms/step"]
    header += ["ratio K range"] if args.repeat > 1 else []
    fp32_plain = {r[0]: r[2] for r in rows if r[1] == "32-true"}
    if fp32_plain and any(r[1] != "32-true" for r in rows):  # what bf16 buys: seqgen at K over the fp32 plain loop
        header.append("seqgen K / plain fp32")
        for r in rows:
            r.append(round(r[6] / fp32_plain[r[0]], 3) if r[0] in fp32_plain else "")
    scaled = ", ".join(f"{k} x{v:g}" for k, v in STEP_SCALE.items() if k in args.tasks)
    table(f"seqgen vs the tight plain PyTorch loop ({machine()}; {args.steps} steps" + (f" ({scaled})" if scaled else "")
          + f" after max({args.warmup}, K) warm-up" + (f"; medians of {args.repeat} runs" if args.repeat > 1 else "")
          + ("; the plain loop with seqgen's lean update" if UPDATE == "lean" else "")
          + ("; the plain LM loop with seqgen's fused loss" if LM_LOSS == "fused" else "") + ")",
          header, rows)


if __name__ == "__main__":
    main()
