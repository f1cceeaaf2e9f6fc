"""Sampling text from a trained language-model checkpoint (used by ``scripts/generate.py``)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import torch

from seqgen.checkpoints import find_checkpoint, load_checkpoint, module_from_checkpoint
from seqgen.cli import parse_kv, write_output
from seqgen.data.tokenizers import CharTokenizer, Tokenizer
from seqgen.errors import CheckpointError, ConfigError


@dataclass
class GenerateArgs:
    ckpt: str = ""
    prompt: str = "The "
    max_new_tokens: int = 300
    temperature: float = 0.8
    top_k: int | None = None
    top_p: float | None = None
    num_samples: int = 1
    seed: int = 0
    oov: str = "error"  # what to do with prompt characters outside the vocabulary: error | drop | unk
    out: str | None = None  # default: <run dir>/samples/generated_<time>.txt
    device: str = "cpu"


def parse_args(argv: list[str]) -> GenerateArgs:
    """``key=value`` arguments, checked against :class:`GenerateArgs` (unknown keys listed)."""
    args = parse_kv(argv, GenerateArgs, unescape=("prompt",))
    if not args.ckpt:
        raise ConfigError("ckpt=<checkpoint file or run folder> is required")
    if args.max_new_tokens <= 0 or args.num_samples <= 0:
        raise ConfigError("max_new_tokens and num_samples must be positive")
    if args.temperature <= 0:
        raise ConfigError(f"temperature must be > 0, got {args.temperature}")
    if args.top_p is not None and not 0 < args.top_p <= 1:
        raise ConfigError(f"top_p must be in (0, 1], got {args.top_p}")
    if args.oov not in ("error", "drop", "unk"):
        raise ConfigError(f"oov must be error, drop or unk, got {args.oov!r}")
    return args


def load_language_model(path: str, device: str = "cpu"):
    """Return ``(model, tokenizer, info)`` from a seqgen LM checkpoint, loaded with weights_only=True."""
    from seqgen.models import LanguageModel

    ckpt_path = find_checkpoint(path)
    ckpt = load_checkpoint(ckpt_path)
    info = ckpt.get("seqgen")
    if not info or info.get("model_class") != "LanguageModel" or not info.get("tokenizer"):
        kind = (info or {}).get("model_class", "unknown")
        raise CheckpointError(f"{ckpt_path} is not a seqgen language-model checkpoint (model: {kind}); "
                              "generate.py needs one written by a language-model task such as char_lm")
    model = module_from_checkpoint(LanguageModel, ckpt, device)
    return model, Tokenizer.from_state(info["tokenizer"]), info


def encode_prompt(tokenizer: Tokenizer, prompt: str, oov: str) -> list[int]:
    if not prompt:
        raise ConfigError("the prompt is empty: give prompt=\"some text\" to continue")
    if isinstance(tokenizer, CharTokenizer):
        bad = tokenizer.unknown(prompt)
        if bad and oov == "error":
            raise ConfigError(f"the prompt has characters outside the model's vocabulary: {bad!r}; "
                              "use oov=drop to remove them or oov=unk to feed them as <unk>")
        if bad and oov == "drop":
            prompt = "".join(c for c in prompt if c in tokenizer.stoi)
    ids = tokenizer.encode(prompt)
    if not ids:
        raise ConfigError("nothing of the prompt is left after dropping out-of-vocabulary characters")
    return ids


def generate(args: GenerateArgs) -> tuple[list[str], Path]:
    model, tokenizer, _ = load_language_model(args.ckpt, args.device)
    ids = encode_prompt(tokenizer, args.prompt, args.oov)
    prompt = torch.tensor([ids] * args.num_samples, dtype=torch.long, device=model.device)
    gen = torch.Generator(device=model.device).manual_seed(args.seed)
    out = model.generate(prompt, args.max_new_tokens, args.temperature, args.top_k, args.top_p, generator=gen)
    texts = [args.prompt + tokenizer.decode(row.tolist()) for row in out]
    if args.out:
        dest = Path(args.out)
    else:
        run_dir = find_checkpoint(args.ckpt).parent.parent
        dest = run_dir / "samples" / f"generated_{time.strftime('%Y%m%d-%H%M%S')}.txt"
    return texts, write_output(dest, ("\n" + "-" * 60 + "\n").join(texts) + "\n")
