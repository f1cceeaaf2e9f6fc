#!/usr/bin/env python
"""seqgen (Lightning + Hydra config + callbacks) versus a plain PyTorch loop, same process.

One task per family: the plain loop trains the same net (built from the same config) on the
same batches with the same optimiser and clipping, computing the loss with the same math, with
no Lightning: char_lm (truncated BPTT), digits_lenet (classifier, CNN), dates_attn (translator,
Bahdanau attention), digits_vae (ELBO), digits_gan (two optimisers). The table gives optimiser
steps/s (training only; a GAN step is one D and one G update) of each, their ratio, and the
extra milliseconds seqgen spends per step (Lightning's loop, hooks and logging, and per-epoch
validation and checkpoints), in fp32 and under bf16 autocast.

    python benchmarks/overhead.py [--tasks char_lm digits_lenet dates_attn digits_vae digits_gan]
        [--steps 150] [--precisions 32-true bf16-mixed]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from common import machine, make_cfg, table

from seqgen.callbacks import Throughput
from seqgen.nets import detach_state
from seqgen.train import build_datamodule, build_model, run


def _lm_step(model, batch, state):
    x, y = batch
    logits, state = model.net(x, state)
    return F.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), y.reshape(-1)), detach_state(state)


def _classifier_step(model, batch, state):
    x, y = batch
    if len(model.augment):
        x = model.augment(x)
    return F.cross_entropy(model.net(x).float(), y, label_smoothing=model.label_smoothing), None


def _translator_step(model, batch, state):
    tgt = batch["tgt"]
    logits = model.net(batch["src"], tgt[:, :-1], teacher_forcing=model.teacher_forcing)
    return F.cross_entropy(logits.float().reshape(-1, logits.size(-1)), tgt[:, 1:].reshape(-1), ignore_index=0,
                           label_smoothing=model.label_smoothing), None


def _vae_step(model, batch, state):
    rec, kl, _ = model.elbo_terms(batch[0])
    return (rec + model.beta * kl).mean(), None


STEPS = {"LanguageModel": _lm_step, "Classifier": _classifier_step, "Translator": _translator_step, "VAE": _vae_step}


def plain_loop(cfg, steps: int, warmup: int, precision: str) -> float:
    dm = build_datamodule(cfg)
    dm.setup("fit")
    torch.manual_seed(cfg.seed)
    model = build_model(cfg, dm.dims)
    kind = type(model).__name__
    autocast = precision.startswith("bf16")
    clip = cfg.trainer.gradient_clip_val
    model.train()
    if kind == "GAN":
        opts = model.configure_optimizers()
        opt_g, opt_d = (o["optimizer"] if isinstance(o, dict) else o for o in (opts[0] if isinstance(opts, tuple) else opts))
    else:
        opt = torch.optim.Adam(model.parameters(), lr=cfg.model.optimizer.lr)
    state, done, t0 = None, 0, None
    while done < steps + warmup:
        for batch in dm.train_dataloader():
            if done == warmup:
                t0 = time.perf_counter()
            if kind == "GAN":  # one discriminator and one generator update, as GAN.training_step
                x, y = batch
                real, labels = x * 2 - 1, (y if model.conditional else None)
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
                    fake = model.generator(torch.randn(x.size(0), model.latent_dim), labels).detach()
                    d_loss = model.discriminator_loss(real, fake, labels)[0]
                opt_d.zero_grad(set_to_none=True)
                d_loss.backward()
                opt_d.step()
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
                    g_loss = model.generator_loss(model.generator(torch.randn(x.size(0), model.latent_dim), labels), labels)
                opt_g.zero_grad(set_to_none=True)
                g_loss.backward()
                opt_g.step()
            else:
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
                    loss, state = STEPS[kind](model, batch, state)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                if clip:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
                opt.step()
            done += 1
            if done == steps + warmup:
                break
    return steps / (time.perf_counter() - t0)


def seqgen_run(cfg, steps: int, warmup: int) -> float:
    timer = Throughput(warmup=warmup)
    run(cfg, extra_callbacks=[timer])
    return timer.steps_per_sec


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--precisions", nargs="+", default=["32-true", "bf16-mixed"])
    ap.add_argument("--tasks", nargs="+", default=["char_lm", "digits_lenet", "dates_attn", "digits_vae", "digits_gan"])
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for task in args.tasks:
            for prec in args.precisions:
                overrides = [f"task={task}", f"trainer.precision={prec}", "trainer.max_epochs=-1",
                             "trainer.limit_val_batches=2", "trainer.num_sanity_val_steps=0", "test=false",
                             "callbacks.progress_bar=null"]
                # a GAN's Lightning global_step counts both optimisers' steps
                total = (args.steps + args.warmup) * (2 if task.endswith("gan") else 1)
                overrides.append(f"trainer.max_steps={total}")
                if task == "char_lm":
                    overrides.append("callbacks.text_samples=null")
                cfg = make_cfg(Path(tmp) / f"{task}_{prec}", overrides)
                plain = plain_loop(cfg, args.steps, args.warmup, prec)
                ours = seqgen_run(cfg, args.steps, args.warmup)
                plain2 = plain_loop(cfg, args.steps, args.warmup, prec)  # again, to bracket drift
                plain = (plain + plain2) / 2
                extra_ms = 1000 / ours - 1000 / plain  # the fixed cost per step that the ratio hides
                rows.append([task, prec, round(plain, 2), round(ours, 2), round(ours / plain, 3), round(extra_ms, 2)])
    table(f"seqgen vs plain PyTorch loop ({machine()}; {args.steps} steps after {args.warmup} warm-up)",
          ["task", "precision", "plain steps/s", "seqgen steps/s", "ratio", "extra ms/step"], rows)


if __name__ == "__main__":
    main()
