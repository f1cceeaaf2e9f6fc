"""The fully composed config of every task, as ``scripts/train.py task=<name>`` would build it
(resolved, with the machine-dependent paths pinned), for the composed-config snapshot test.

``python tests/composed.py --write`` rewrites ``tests/snapshots/composed_tasks.json``; do that only
when a change of a recipe is intended, and say which keys changed and why in the commit.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import OmegaConf, open_dict

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"
SNAPSHOT = Path(__file__).with_name("snapshots") / "composed_tasks.json"
PINNED = {"paths.data_dir": "/DATA", "paths.log_dir": "/LOGS", "paths.output_dir": "/RUN"}


def composed(task: str) -> dict:
    """The resolved user config of ``task=<task>`` (no ``hydra`` node, pinned paths)."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF)):
        cfg = compose("train", overrides=[f"task={task}"], return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        for key, value in PINNED.items():
            OmegaConf.update(cfg, key, value)
    user = OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"])
    return OmegaConf.to_container(user, resolve=True)


def differences(old: dict | None, new: dict | None, prefix: str = "") -> list[str]:
    """The dotted keys whose values differ, including the order of the callbacks (the order in which
    Lightning calls them)."""
    if old is None or new is None:
        return [prefix or "<task>"] if old != new else []
    out = []
    for key in sorted(set(old) | set(new)):
        a, b, path = old.get(key, "<absent>"), new.get(key, "<absent>"), f"{prefix}{key}"
        if isinstance(a, dict) and isinstance(b, dict):
            out += differences(a, b, path + ".")
        elif a != b:
            out.append(path)
    if prefix == "" and "callbacks" in old and "callbacks" in new and list(old["callbacks"]) != list(new["callbacks"]):
        out.append("callbacks (order)")
    return out


def all_tasks() -> list[str]:
    return sorted(p.stem for p in (CONF / "task").glob("*.yaml"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--write", action="store_true", help="rewrite the snapshot")
    args = ap.parse_args()
    snap = {t: composed(t) for t in all_tasks()}
    if args.write:
        SNAPSHOT.parent.mkdir(exist_ok=True)
        SNAPSHOT.write_text(json.dumps(snap, indent=1) + "\n")
        print(f"wrote {SNAPSHOT} ({len(snap)} tasks)")
        return 0
    old = json.loads(SNAPSHOT.read_text())
    bad = [t for t in sorted(set(old) | set(snap)) if differences(old.get(t), snap.get(t))]
    print("differ:", ", ".join(bad) if bad else "none")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
