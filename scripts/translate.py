#!/usr/bin/env python
"""Translate with a trained translation checkpoint, line by line.

    python scripts/translate.py ckpt=outputs/dates_attn/<run> input="the 4th of march 1997"
    python scripts/translate.py ckpt=<run or .ckpt> input=sentences.de.txt beam=5 out=sentences.en.txt
    cat sentences.de.txt | python scripts/translate.py ckpt=<run> beam=1

``ckpt`` is a checkpoint file or a run folder (its checkpoints/last.ckpt). ``input`` is a file (one
sentence per line), a sentence, or absent/``-`` for stdin. ``beam=1`` decodes greedily; also
``len_penalty=``, ``max_len=``, ``batch_size=``, ``device=``. Translations are printed, one per
input line, and written to ``out`` when given.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from seqgen.cli import script_main  # noqa: E402


def _translate(argv: list[str]) -> None:
    from seqgen.translate import parse_args, translate

    for line in translate(parse_args(argv)):
        print(line)


def main(argv: list[str]) -> int:
    return script_main(argv, __doc__, _translate)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
