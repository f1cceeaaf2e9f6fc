#!/usr/bin/env python
"""Sample text from a trained language model.

    python scripts/generate.py ckpt=outputs/char_lm/<run> prompt="The " temperature=0.8 \
        top_k=null top_p=0.95 max_new_tokens=500 num_samples=2 seed=0 [out=file.txt] [oov=error|drop|unk]

``ckpt`` is a checkpoint file or a run folder (its checkpoints/last.ckpt). Samples are printed
and saved (default: <run>/samples/generated_<time>.txt).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from seqgen.cli import script_main  # noqa: E402


def _generate(argv: list[str]) -> None:
    from seqgen.generate import generate, parse_args

    texts, dest = generate(parse_args(argv))
    for i, t in enumerate(texts):
        print(f"--- sample {i} ---\n{t}")
    print(f"saved to {dest}")


def main(argv: list[str]) -> int:
    return script_main(argv, __doc__, _generate)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
