#!/usr/bin/env python
"""Detect objects in an image with a trained detector and save the image with its boxes.

    python scripts/detect.py ckpt=outputs/digits_detect_fcos/<run> image=canvas.png \
        [score_threshold=0.3] [out=boxes.png] [device=cpu]

``ckpt`` is a checkpoint file or a run folder (its checkpoints/last.ckpt). Prints one line per
detection (class, score, box in the image's pixels) and saves the drawing (default:
<run>/samples/detect_<image name>.png).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from seqgen.cli import script_main  # noqa: E402


def _detect(argv: list[str]) -> None:
    from seqgen.detect import detect, parse_args

    found, dest = detect(parse_args(argv))
    for name, score, box in found:
        print(f"{name}\t{score:.3f}\t{box}")
    print(f"{len(found)} detections; saved to {dest}")


def main(argv: list[str]) -> int:
    return script_main(argv, __doc__, _detect)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
