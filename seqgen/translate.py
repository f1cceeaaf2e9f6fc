"""Translating with a trained Translator checkpoint (used by ``scripts/translate.py``).

The checkpoint carries everything: the net's hyperparameters and both tokenizers (plain data,
loaded with ``weights_only=True``), so no dataset is needed.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import torch

from seqgen.checkpoints import find_checkpoint, load_checkpoint, module_from_checkpoint
from seqgen.errors import CheckpointError, ConfigError


@dataclass
class TranslateArgs:
    ckpt: str = ""
    input: str | None = None  # a file of sentences (one per line), a sentence, or "-"/absent: stdin
    beam: int = 5  # 1: greedy
    len_penalty: float | None = None  # default: the checkpoint's
    max_len: int | None = None  # output tokens (default: the net's limit)
    batch_size: int = 64
    out: str | None = None  # also write the translations here, one per line
    device: str = "cpu"


def parse_args(argv: list[str]) -> TranslateArgs:
    from seqgen.cli import parse_kv

    args = parse_kv(argv, TranslateArgs)
    if not args.ckpt:
        raise ConfigError("ckpt=<checkpoint file or run folder> is required")
    if args.beam < 1 or args.batch_size < 1:
        raise ConfigError(f"beam and batch_size must be positive integers, got beam={args.beam}, batch_size={args.batch_size}")
    if args.max_len is not None and args.max_len < 1:
        raise ConfigError(f"max_len must be positive, got {args.max_len}")
    return args


class LoadedTranslator:
    """A Translator with its tokenizers: ``translate(lines) -> list[str]``."""

    def __init__(self, path: str, device: str = "cpu"):
        from seqgen.data.tokenizers import Tokenizer
        from seqgen.models import Translator

        ckpt_path = find_checkpoint(path)
        ckpt = load_checkpoint(ckpt_path)
        info = ckpt.get("seqgen") or {}
        if info.get("model_class") != "Translator" or not info.get("src_tokenizer"):
            raise CheckpointError(f"{ckpt_path} is not a seqgen translation checkpoint (model: "
                                  f"{info.get('model_class', 'unknown')}); translate.py needs one written by a "
                                  "translation task such as dates_attn or multi30k_de_en_attn")
        self.model = module_from_checkpoint(Translator, ckpt, device)
        self.src_tok = Tokenizer.from_state(info["src_tokenizer"])
        self.tgt_tok = Tokenizer.from_state(info["tgt_tokenizer"])
        self.max_src_len = int(info.get("max_len", 200))
        self.info = info

    def translate(self, lines: list[str], beam: int = 5, len_penalty: float | None = None, max_len: int | None = None,
                  batch_size: int = 64) -> list[str]:
        from seqgen.data.text import pad_batch
        from seqgen.data.translation import decode_ids, source_ids

        net, out = self.model.net, []
        lp = self.model.len_penalty if len_penalty is None else len_penalty
        for start in range(0, len(lines), batch_size):
            chunk = lines[start:start + batch_size]
            src = pad_batch([source_ids(self.src_tok.encode(s), self.max_src_len) for s in chunk])[0].to(self.model.device)
            with torch.no_grad():
                if beam == 1:
                    tokens, _, _ = net.greedy(src, max_len)
                else:
                    tokens, _, _ = net.beam_search(src, beam, max_len, lp)
            out += [decode_ids(self.tgt_tok, row) for row in tokens.tolist()]
        return out


def read_input(source: str | None, stdin: Iterable[str] | None = None) -> list[str]:
    """Sentences from a file (one per line), the text itself, or stdin (``-`` or absent)."""
    if source in (None, "-"):
        lines = [ln.rstrip("\r\n") for ln in (stdin if stdin is not None else sys.stdin)]
        where = "stdin"
    elif Path(source).is_file():
        lines = Path(source).read_text(encoding="utf-8").splitlines()
        where = source
    else:
        lines, where = [source], "input"
    lines = [ln.strip() for ln in lines]
    if not any(lines):
        raise ConfigError(f"nothing to translate: {where} is empty; give input=\"a sentence\", input=<file>, "
                          "or lines on stdin")
    return lines


def translate(args: TranslateArgs, stdin: Iterable[str] | None = None) -> list[str]:
    lines = read_input(args.input, stdin)  # checked before the model loads: bad input fails fast
    loaded = LoadedTranslator(args.ckpt, args.device)
    keep = [i for i, ln in enumerate(lines) if ln]
    done = loaded.translate([lines[i] for i in keep], args.beam, args.len_penalty, args.max_len, args.batch_size)
    out = [""] * len(lines)  # blank input lines stay blank, so output lines match input lines
    for i, t in zip(keep, done):
        out[i] = t
    if args.out:
        from seqgen.cli import write_output

        write_output(args.out, "".join(t + "\n" for t in out))
    return out
