#!/usr/bin/env python
"""Generative models on real 8x8 digits (scikit-learn, offline): numbers and pictures.

    python benchmarks/generative.py [--out docs/generative] [--seeds 3] [--gan-epochs 200]

Trains through ``seqgen.train.run`` (the same task configs as ``scripts/train.py``) and prints:

* VAE (digits_vae): test ELBO and IWAE NLL (k=100) in nats per digit, and KL;
* autoencoders: test reconstruction error of digits_ae; digits_dae's error on noisy inputs beside
  the noisy inputs' own error;
* RBM (digits_rbm): pseudo-log-likelihood and reconstruction error;
* DBN: greedy pretraining (digits_dbn_pretrain), then the same sigmoid MLP fine-tuned from the
  stack or from random init with 5%, 20% and 100% of the training labels (mean ± std over seeds);
* GAN (digits_gan): Fréchet distances (pixels, and features of a digits_mlp classifier trained
  first) and the classifier score per evaluated epoch;

and copies one sample grid per family into ``--out`` (committed under docs/ for the README).
"""

from __future__ import annotations

import argparse
import csv
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from common import QUIET, ROOT, machine, make_cfg, table  # noqa: E402

from seqgen.train import run  # noqa: E402


def train(tmp: Path, name: str, overrides: list[str]) -> tuple[dict[str, float], Path, float]:
    out = tmp / name
    t0 = time.perf_counter()
    metrics = run(make_cfg(out, [*QUIET, *overrides]))
    return metrics, out, time.perf_counter() - t0


def series(run_dir: Path, keys: list[str]) -> list[dict[str, float]]:
    rows = []
    with open(run_dir / "metrics.csv") as f:
        for r in csv.DictReader(f):
            if any(r.get(k) for k in keys):
                rows.append({"epoch": int(r["epoch"]), **{k: float(r[k]) for k in keys if r.get(k)}})
    return rows


def keep(src: Path, out: Path, name: str) -> None:
    if src.is_file():
        out.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, out / name)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(ROOT / "docs" / "generative"))
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--gan-epochs", type=int, default=300)
    ap.add_argument("--steps", type=int, default=1500, help="fine-tuning budget in SGD steps (same for both inits)")
    ap.add_argument("--only", nargs="*", default=["vae", "ae", "rbm", "dbn", "gan"])
    args = ap.parse_args()
    out = Path(args.out)
    report = [f"Machine: {machine()}"]
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        # VAE ---------------------------------------------------------------------------------
        if "vae" in args.only:
            m, r, t = train(tmp, "vae", ["task=digits_vae"])
            keep(r / "samples" / "samples_test.png", out, "vae_samples.png")
            keep(r / "samples" / "interpolations_test.png", out, "vae_interpolations.png")
            m2, r2, t2 = train(tmp, "vae2d", ["task=digits_vae", "model.net.latent_dim=2"])
            keep(r2 / "plots" / "latent.png", out, "vae_latent2d.png")
            report.append(table("VAE on binarised 8x8 digits (nats per digit; test set of 359)",
                                ["task", "latent", "test ELBO", "test NLL (IWAE k=100)", "test KL", "time s"],
                                [["digits_vae", 8, m["test/elbo"], m["test/nll_iwae"], m["test/kl"], round(t)],
                                 ["digits_vae", 2, m2["test/elbo"], m2["test/nll_iwae"], m2["test/kl"], round(t2)]]))
        # autoencoders --------------------------------------------------------------------------
        if "ae" in args.only:
            ae, ra, ta = train(tmp, "ae", ["task=digits_ae"])
            dae, rd, td = train(tmp, "dae", ["task=digits_dae"])
            keep(rd / "samples" / "reconstructions_test.png", out, "dae_reconstructions.png")
            report.append(table("Autoencoders on 8x8 digits (per-pixel squared error, test)",
                                ["task", "output vs clean", "noisy input vs clean", "time s"],
                                [["digits_ae", ae["test/mse"], "-", round(ta)],
                                 ["digits_dae (Gaussian noise 0.3)", dae["test/mse"], dae["test/noisy_mse"], round(td)]]))
        # RBM -------------------------------------------------------------------------------------
        if "rbm" in args.only:
            rbm, rr, tr = train(tmp, "rbm", ["task=digits_rbm"])
            keep(rr / "samples" / "filters_test.png", out, "rbm_filters.png")
            keep(rr / "samples" / "samples_test.png", out, "rbm_samples.png")
            pll = series(rr, ["val/pll"])
            report.append(table("RBM 64-128 on 8x8 digits, CD-1 (pseudo-log-likelihood per digit, higher is better)",
                                ["epoch", "val PLL"], [[p["epoch"], p["val/pll"]] for p in pll[:: max(1, len(pll) // 8)]]
                                + [["test", rbm["test/pll"]]]))
            report.append(f"RBM test reconstruction error {rbm['test/recon']:.4f} per pixel; {tr:.0f} s")
        # DBN ---------------------------------------------------------------------------------------
        if "dbn" in args.only:
            _, rp, tp = train(tmp, "dbn_pre", ["task=digits_dbn_pretrain"])
            keep(rp / "samples" / "samples_test.png", out, "dbn_samples.png")
            n_train = 1293  # digits training split after the 10% validation hold-out
            rows = []
            for frac in (0.05, 0.2, 1.0):
                n = n_train if frac == 1.0 else round(frac * n_train)
                size = [] if frac == 1.0 else [f"data.train_size={n}"]
                epochs = -(-args.steps // -(-n // 64))  # the same number of SGD steps whatever the label count
                size += [f"trainer.max_epochs={epochs}", "callbacks.early_stopping=null"]
                accs: dict[str, list[float]] = {"dbn": [], "random": []}
                for seed in range(args.seeds):
                    for init, ref in (("dbn", str(rp)), ("random", "null")):
                        res, _, _ = train(tmp, f"ft_{frac}_{seed}_{init}",
                                          ["task=digits_dbn", f"model.init_from={ref}", f"seed={seed}", *size])
                        accs[init].append(res["test/acc"])
                def fmt(v: list[float]) -> str:
                    return f"{100 * statistics.mean(v):.1f} ± {100 * (statistics.stdev(v) if len(v) > 1 else 0):.1f}"
                rows.append([f"{int(frac * 100)}% ({round(frac * n_train)})", fmt(accs["dbn"]), fmt(accs["random"])])
            report.append(table(f"DBN 64-128-128 sigmoid MLP on digits: test accuracy % (mean ± std of {args.seeds} seeds); "
                                f"pretraining {tp:.0f} s; fine-tuning {args.steps} SGD steps", ["labels", "DBN-pretrained", "random init"], rows))
        # GAN -----------------------------------------------------------------------------------------
        if "gan" in args.only:
            _, rc, _ = train(tmp, "clf", ["task=digits_mlp"])
            g, rg, tg = train(tmp, "gan", ["task=digits_gan", f"trainer.max_epochs={args.gan_epochs}",
                                            f"model.eval_classifier={rc}"])
            keep(rg / "samples" / "samples_test.png", out, "gan_samples.png")
            _, rcg, _ = train(tmp, "cgan", ["task=digits_gan", "model.conditional=true",
                                             f"trainer.max_epochs={args.gan_epochs}", f"model.eval_classifier={rc}"])
            keep(rcg / "samples" / "samples_test.png", out, "cgan_samples.png")
            ser = series(rg, ["val/fd_pixels", "val/fd", "val/classifier_score"])
            step = max(1, len(ser) // 10)
            report.append(table(f"GAN (MLP) on 8x8 digits, {args.gan_epochs} epochs, {tg:.0f} s: Fréchet distances "
                                "(pixels; digits_mlp penultimate features) and classifier score (1..10)",
                                ["epoch", "FD pixels", "FD classifier", "classifier score"],
                                [[s["epoch"], s.get("val/fd_pixels", float("nan")), s.get("val/fd", float("nan")),
                                  s.get("val/classifier_score", float("nan"))] for s in ser[::step] + ser[-1:]]))
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.md").write_text("\n".join(report) + "\n")
    print(f"\nwrote {out}/results.md and the sample grids")


if __name__ == "__main__":
    main()
