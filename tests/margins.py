"""Measure the margin of every learning threshold: rerun the ``learning`` tests over several seeds
and thread counts and print, per lesson, the threshold beside the worst value seen.

    python tests/margins.py                       # 5 seeds x threads 1 and 2 (about 25 min on 2 cores)
    python tests/margins.py --seeds 1234 1 --threads 1 -k tagging

Each pytest run gets SEQGEN_MARGIN_SEED (the ``learn_seed`` fixture: the run's ``seed=``),
SEQGEN_TEST_THREADS (torch's intra-op threads) and SEQGEN_MARGINS_OUT (where ``lesson`` records
its values instead of asserting them). A threshold is sound when the worst value over all runs
still clears it by a clear margin; "margin" is that distance, in the metric's own units.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def sweep(seeds: list[int], threads: list[int], select: str | None, workers: int) -> list[dict]:
    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        for t in threads:
            for s in seeds:
                out = Path(tmp) / f"seed{s}_t{t}.jsonl"
                env = {**os.environ, "SEQGEN_MARGIN_SEED": str(s), "SEQGEN_TEST_THREADS": str(t),
                       "SEQGEN_MARGINS_OUT": str(out)}
                cmd = [sys.executable, "-m", "pytest", "-q", "-m", "learning", "-p", "no:randomly", "-p", "no:cacheprovider"]
                cmd += ["-n", str(workers)] if workers > 1 else ["-p", "no:xdist"]
                if select:
                    cmd += ["-k", select]
                print(f"seed {s}, {t} thread(s): {' '.join(cmd[3:])}", flush=True)
                proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
                if proc.returncode not in (0, 5):
                    print(proc.stdout[-3000:], proc.stderr[-3000:], sep="\n")
                    raise SystemExit(f"pytest failed (rc {proc.returncode}) at seed {s}, {t} thread(s)")
                if out.exists():
                    rows += [json.loads(line) for line in out.read_text().splitlines()]
    return rows


def table(rows: list[dict]) -> str:
    groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for r in rows:
        groups[(r["test"], r["lesson"])].append(r)
    lines = ["| test | lesson | threshold | worst seen | median | margin | runs | all pass |", "|---|---|---|---|---|---|---|---|"]
    for (test, name), rs in sorted(groups.items()):
        op, thr = rs[0]["op"], rs[0]["threshold"]
        values = sorted(r["value"] for r in rs)
        worst = values[0] if op.startswith(">") else values[-1]
        margin = worst - thr if op.startswith(">") else thr - worst
        ok = all((v > thr if op == ">" else v >= thr if op == ">=" else v < thr if op == "<" else v <= thr) for v in values)
        lines.append(f"| `{test}` | {name} | {op} {thr:g} | {worst:.4f} | {values[len(values) // 2]:.4f} | {margin:+.4f} "
                     f"| {len(values)} | {'yes' if ok else '**no**'} |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[1234, 1, 2, 3, 4])
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("-k", dest="select", default=None, help="pytest -k expression")
    p.add_argument("-n", dest="workers", type=int, default=2, help="pytest-xdist workers per run")
    p.add_argument("--json", type=Path, default=None, help="also write every observed value here")
    args = p.parse_args()
    rows = sweep(args.seeds, args.threads, args.select, args.workers)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    print(table(rows))


if __name__ == "__main__":
    main()
