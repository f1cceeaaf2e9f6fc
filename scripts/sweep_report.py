#!/usr/bin/env python
"""Collect a Hydra multirun (grid or Optuna) into one CSV and a PNG, best run first.

    python scripts/sweep_report.py outputs/<task>/multirun_<time> [--metric val/acc] [--mode max]

Reads each job's ``.hydra/overrides.yaml`` and ``metrics.json`` (written by seqgen.train.run);
writes ``<dir>/sweep.csv`` and ``<dir>/sweep.png`` (the metric against each swept parameter).
The metric defaults to the sweep's ``optimized_metric``.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import yaml


def collect(root: Path) -> tuple[list[dict], str | None]:
    rows, metric = [], None
    for job in sorted(p for p in root.iterdir() if p.is_dir() and (p / ".hydra" / "overrides.yaml").is_file()):
        overrides = yaml.safe_load((job / ".hydra" / "overrides.yaml").read_text()) or []
        cfg_path = job / ".hydra" / "config.yaml"
        if metric is None and cfg_path.is_file():
            metric = (yaml.safe_load(cfg_path.read_text()) or {}).get("optimized_metric")
        params = {}
        for o in overrides:
            key, _, value = o.partition("=")
            params[key.lstrip("+~")] = value
        metrics_path = job / "metrics.json"
        metrics = json.loads(metrics_path.read_text()) if metrics_path.is_file() else {}
        rows.append({"job": job.name, **params, **metrics, "_failed": not metrics})
    return rows, metric


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("multirun_dir", type=Path)
    ap.add_argument("--metric")
    ap.add_argument("--mode", choices=["min", "max"], help="default: max for acc/f1, min otherwise")
    args = ap.parse_args(argv)
    if not args.multirun_dir.is_dir():
        print(f"error: not a folder: {args.multirun_dir}", file=sys.stderr)
        return 2
    rows, default_metric = collect(args.multirun_dir)
    if not rows:
        print(f"error: no Hydra jobs (subfolders with .hydra/overrides.yaml) in {args.multirun_dir}", file=sys.stderr)
        return 2
    metric = args.metric or default_metric
    done = [r for r in rows if not r["_failed"]]
    if not metric or not any(metric in r for r in done):
        known = sorted({k for r in done for k in r if "/" in k})
        print(f"error: metric {metric!r} not found; logged: {', '.join(known)}", file=sys.stderr)
        return 2
    mode = args.mode or ("max" if any(t in metric for t in ("acc", "f1", "bleu")) else "min")
    done.sort(key=lambda r: r.get(metric, float("nan")), reverse=mode == "max")
    failed = [r for r in rows if r["_failed"]]
    params = sorted({k for r in rows for k in r if k not in ("job", "_failed") and "/" not in k})
    metrics = sorted({k for r in done for k in r if "/" in k})
    out_csv = args.multirun_dir / "sweep.csv"
    with open(out_csv, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["job", *params, *metrics, "status"], extrasaction="ignore")
        w.writeheader()
        for r in done + failed:
            w.writerow({**r, "status": "failed" if r["_failed"] else "ok"})
    swept = [p for p in params if len({str(r.get(p)) for r in rows}) > 1]
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = max(1, len(swept))
    fig, axes = plt.subplots(1, n, figsize=(4 * n, 3.5), squeeze=False)
    for ax, p in zip(axes[0], swept or ["job"]):
        xs = [r.get(p) for r in done]
        try:
            xv = [float(x) for x in xs]
            ax.scatter(xv, [r[metric] for r in done])
            if p.endswith("lr") or "decay" in p:
                ax.set_xscale("log")
        except (TypeError, ValueError):
            labels = sorted({str(x) for x in xs})
            ax.scatter([labels.index(str(x)) for x in xs], [r[metric] for r in done])
            ax.set_xticks(range(len(labels)), labels, rotation=30, fontsize=7)
        ax.set_xlabel(p)
        ax.set_ylabel(metric)
    fig.tight_layout()
    fig.savefig(args.multirun_dir / "sweep.png", dpi=90)
    best = done[0]
    print(f"{len(done)} runs ({len(failed)} failed); best {metric} = {best[metric]:.4f} in {best['job']}: "
          + " ".join(f"{p}={best.get(p)}" for p in swept))
    print(f"wrote {out_csv} and {args.multirun_dir / 'sweep.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
