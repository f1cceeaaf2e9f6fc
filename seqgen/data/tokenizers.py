"""Tokenizers with one interface: ``encode``, ``decode``, ``vocab_size``, ``save``/``load``.

Their state is plain data (``to_dict``/``from_dict``) so it can travel inside a checkpoint
that loads with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, ClassVar

from seqgen.errors import ConfigError, DataError

UNK, PAD, BOS, EOS = "<unk>", "<pad>", "<bos>", "<eos>"


class Tokenizer:
    """Common interface. Subclasses register themselves by ``kind`` for :func:`load_tokenizer`."""

    kind: ClassVar[str] = ""
    registry: ClassVar[dict[str, type[Tokenizer]]] = {}

    def __init_subclass__(cls, **kw: Any) -> None:
        super().__init_subclass__(**kw)
        if cls.kind:
            Tokenizer.registry[cls.kind] = cls

    @property
    def vocab_size(self) -> int:
        raise NotImplementedError

    def encode(self, text: str) -> list[int]:
        raise NotImplementedError

    def decode(self, ids: Iterable[int]) -> str:
        raise NotImplementedError

    def to_dict(self) -> dict[str, Any]:
        raise NotImplementedError

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> Tokenizer:
        kind = state.get("kind")
        if kind not in Tokenizer.registry:
            raise DataError(f"unknown tokenizer kind {kind!r}; known: {sorted(Tokenizer.registry)}")
        return Tokenizer.registry[kind]._from_state(state)

    @classmethod
    def _from_state(cls, state: dict[str, Any]) -> Tokenizer:
        raise NotImplementedError

    def save(self, path: str | os.PathLike) -> None:
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(self.to_dict(), ensure_ascii=False))
        os.replace(tmp, path)

    @staticmethod
    def load(path: str | os.PathLike) -> Tokenizer:
        return Tokenizer.from_dict(json.loads(Path(path).read_text()))


class CharTokenizer(Tokenizer):
    """One id per character seen in the training text; unseen characters map to ``<unk>`` (id 0)."""

    kind = "char"

    def __init__(self, chars: Sequence[str]):
        chars = [c for c in chars if c != UNK]
        if len(set(chars)) != len(chars):
            raise DataError("CharTokenizer: duplicate characters in vocabulary")
        self.itos = [UNK, *chars]
        self.stoi = {c: i for i, c in enumerate(self.itos)}
        self.unk_id = 0

    @classmethod
    def train(cls, text: str) -> CharTokenizer:
        if not text:
            raise DataError("cannot build a character vocabulary from an empty text")
        return cls(sorted(set(text)))

    @property
    def vocab_size(self) -> int:
        return len(self.itos)

    def encode(self, text: str) -> list[int]:
        get = self.stoi.get
        return [get(c, 0) for c in text]

    def unknown(self, text: str) -> list[str]:
        """Characters of ``text`` that are not in the vocabulary (they would encode as ``<unk>``)."""
        return sorted({c for c in text if c not in self.stoi})

    def decode(self, ids: Iterable[int]) -> str:
        itos, n = self.itos, len(self.itos)
        out = []
        for i in ids:
            i = int(i)
            if not 0 <= i < n:
                raise DataError(f"token id {i} is outside the vocabulary (size {n})")
            out.append("\ufffd" if i == 0 else itos[i])
        return "".join(out)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "chars": self.itos[1:]}

    @classmethod
    def _from_state(cls, state: dict[str, Any]) -> CharTokenizer:
        return cls(state["chars"])


class WordTokenizer(Tokenizer):
    """Whitespace word vocabulary with specials, ``min_freq`` and ``max_size``.

    ``specials`` come first (``<unk>`` always present); the rest is ordered by frequency,
    ties broken alphabetically, so the vocabulary is the same on every run. ``split="char"``
    makes every character a token (decoded without separators): a character vocabulary with
    the sequence specials, as the dates translation task uses.
    """

    kind = "word"

    def __init__(self, itos: Sequence[str], specials: Sequence[str] = (UNK, EOS), lower: bool = False,
                 split: str = "space"):
        if split not in ("space", "char"):
            raise ConfigError(f"WordTokenizer split must be 'space' or 'char', got {split!r}")
        self.split = split
        if UNK not in specials:
            specials = (UNK, *specials)
        self.specials = list(specials)
        self.itos = list(itos)
        if self.itos[: len(self.specials)] != self.specials:
            raise DataError("WordTokenizer: vocabulary must start with its specials")
        self.stoi = {w: i for i, w in enumerate(self.itos)}
        self.unk_id = self.stoi[UNK]
        self.lower = lower

    @classmethod
    def train(
        cls,
        lines: Iterable[str],
        min_freq: int = 1,
        max_size: int | None = None,
        specials: Sequence[str] = (UNK, EOS),
        lower: bool = False,
        split: str = "space",
    ) -> WordTokenizer:
        if min_freq < 1:
            raise ConfigError(f"min_freq must be >= 1, got {min_freq}")
        counts: Counter[str] = Counter()
        for line in lines:
            line = line.lower() if lower else line
            counts.update(line if split == "char" else line.split())
        if not counts:
            raise DataError("cannot build a word vocabulary from an empty corpus")
        specials = list(specials) if UNK in specials else [UNK, *specials]
        words = [w for w, c in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])) if c >= min_freq and w not in specials]
        if max_size is not None:
            if max_size <= len(specials):
                raise ConfigError(f"max_size={max_size} leaves no room beyond the {len(specials)} special tokens")
            words = words[: max_size - len(specials)]
        return cls([*specials, *words], specials=specials, lower=lower, split=split)

    @property
    def vocab_size(self) -> int:
        return len(self.itos)

    def tokens(self, text: str) -> list[str]:
        text = text.lower() if self.lower else text
        return list(text) if self.split == "char" else text.split()

    def encode(self, text: str, add_eos: bool = False) -> list[int]:
        get, unk = self.stoi.get, self.unk_id
        ids = [get(w, unk) for w in self.tokens(text)]
        if add_eos and EOS in self.stoi:
            ids.append(self.stoi[EOS])
        return ids

    def decode(self, ids: Iterable[int]) -> str:
        n = len(self.itos)
        words = []
        for i in ids:
            i = int(i)
            if not 0 <= i < n:
                raise DataError(f"token id {i} is outside the vocabulary (size {n})")
            w = self.itos[i]
            if self.split == "char":  # characters joined as they are; <unk> shown as U+FFFD, other specials dropped
                if w == UNK:
                    words.append("\ufffd")
                elif w not in self.specials:
                    words.append(w)
                continue
            words.append("\n" if w == EOS else w)
        if self.split == "char":
            return "".join(words)
        return " ".join(words).replace(" \n ", "\n").replace(" \n", "\n")

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "itos": self.itos, "specials": self.specials, "lower": self.lower, "split": self.split}

    @classmethod
    def _from_state(cls, state: dict[str, Any]) -> WordTokenizer:
        return cls(state["itos"], specials=state["specials"], lower=state.get("lower", False),
                   split=state.get("split", "space"))


def load_tokenizer(path_or_state: str | os.PathLike | dict[str, Any]) -> Tokenizer:
    if isinstance(path_or_state, dict):
        return Tokenizer.from_dict(path_or_state)
    return Tokenizer.load(path_or_state)


SEQ_SPECIALS = (PAD, UNK, BOS, EOS)  # ids 0-3 for classification and translation vocabularies


class SentencePieceTokenizer(Tokenizer):
    """Subword units (Kudo & Richardson 2018): ``model_type`` ``bpe`` or ``unigram``, trained on
    the training split only. Ids: ``<pad>`` 0, ``<unk>`` 1, ``<bos>`` 2, ``<eos>`` 3, like
    :class:`WordTokenizer` with :data:`SEQ_SPECIALS`. The serialized model travels as text
    (base64) in ``to_dict``, so checkpoints with it load with ``weights_only=True``.

    :meth:`train_cached` keeps the model in ``<cache_dir>/sentencepiece/<key>.model``, the key being
    a hash of the settings and of the training text: the next run with the same data and settings
    reuses it instead of training again.
    """

    kind = "sentencepiece"

    def __init__(self, model_proto: bytes):
        import sentencepiece as spm

        self.model_proto = bytes(model_proto)
        self.sp = spm.SentencePieceProcessor(model_proto=self.model_proto)
        self.pad_id, self.unk_id, self.bos_id, self.eos_id = 0, 1, 2, 3

    @staticmethod
    def settings(vocab_size: int, model_type: str, character_coverage: float) -> dict[str, Any]:
        if model_type not in ("bpe", "unigram"):
            raise ConfigError(f"sentencepiece model_type must be bpe or unigram, got {model_type!r}")
        if not isinstance(vocab_size, int) or vocab_size <= 4:
            raise ConfigError(f"sentencepiece vocab_size must be an integer > 4, got {vocab_size!r}")
        return {"vocab_size": vocab_size, "model_type": model_type, "character_coverage": character_coverage}

    @classmethod
    def train(cls, lines: Sequence[str], vocab_size: int = 8000, model_type: str = "bpe",
              character_coverage: float = 1.0) -> SentencePieceTokenizer:
        import io

        import sentencepiece as spm

        opts = cls.settings(vocab_size, model_type, character_coverage)
        lines = [ln for ln in lines if ln.strip()]
        if not lines:
            raise DataError("cannot train sentencepiece on an empty corpus")
        buf = io.BytesIO()
        try:
            spm.SentencePieceTrainer.train(
                sentence_iterator=iter(lines), model_writer=buf, pad_id=0, unk_id=1, bos_id=2, eos_id=3,
                input_sentence_size=2_000_000, shuffle_input_sentence=True, num_threads=1,
                minloglevel=2, hard_vocab_limit=False, **opts)
        except RuntimeError as e:
            raise DataError(f"sentencepiece training failed: {e}") from e
        return cls(buf.getvalue())

    @classmethod
    def train_cached(cls, lines: Sequence[str], cache_dir: str | os.PathLike, vocab_size: int = 8000,
                     model_type: str = "bpe", character_coverage: float = 1.0) -> tuple[SentencePieceTokenizer, bool]:
        """(tokenizer, reused): train, or load the model cached for these settings and this text."""
        import hashlib

        opts = cls.settings(vocab_size, model_type, character_coverage)
        h = hashlib.sha256(json.dumps(opts, sort_keys=True).encode())
        for ln in lines:
            h.update(ln.encode("utf-8"))
            h.update(b"\n")
        path = Path(cache_dir) / "sentencepiece" / f"{model_type}{vocab_size}-{h.hexdigest()[:16]}.model"
        if path.is_file():
            return cls(path.read_bytes()), True
        tok = cls.train(lines, **opts)
        tmp = path.with_name(path.name + ".tmp")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_bytes(tok.model_proto)
            os.replace(tmp, path)
        except OSError as e:  # a read-only data folder: train every run rather than fail
            import contextlib
            import warnings

            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
            warnings.warn(f"sentencepiece model not cached ({e}); it will be trained again next run", stacklevel=2)
        return tok, False

    @property
    def vocab_size(self) -> int:
        return self.sp.get_piece_size()

    def pieces(self, text: str) -> list[str]:
        return self.sp.encode(text, out_type=str)

    def encode(self, text: str, add_eos: bool = False) -> list[int]:
        ids = self.sp.encode(text)
        return [*ids, self.eos_id] if add_eos else ids

    def decode(self, ids: Iterable[int]) -> str:
        n = self.vocab_size
        keep = []
        for i in ids:
            i = int(i)
            if not 0 <= i < n:
                raise DataError(f"token id {i} is outside the vocabulary (size {n})")
            if i not in (self.pad_id, self.bos_id, self.eos_id):
                keep.append(i)
        return self.sp.decode(keep)

    def to_dict(self) -> dict[str, Any]:
        import base64

        return {"kind": self.kind, "model": base64.b64encode(self.model_proto).decode("ascii")}

    @classmethod
    def _from_state(cls, state: dict[str, Any]) -> SentencePieceTokenizer:
        import base64

        return cls(base64.b64decode(state["model"]))


def train_seq_tokenizer(lines: Sequence[str], cfg: dict[str, Any], cache_dir: str | os.PathLike,
                        kinds: Sequence[str] = ("word", "sentencepiece", "char")) -> Tokenizer:
    """A classification/translation vocabulary (ids 0-3: :data:`SEQ_SPECIALS`) trained on ``lines``.
    ``cfg``: ``{"kind": ..., <settings>}`` with ``kind`` one of ``kinds`` (default: the first);
    ``sentencepiece`` models are cached in ``cache_dir``; ``char`` is a character
    :class:`WordTokenizer`."""
    cfg = dict(cfg)
    kind = cfg.pop("kind", kinds[0])
    if kind not in kinds:
        raise ConfigError(f"unknown tokenizer kind {kind!r}; available: {', '.join(kinds)}")
    cfg = _settings_for(kind, cfg)
    if kind == "sentencepiece":
        return SentencePieceTokenizer.train_cached(lines, cache_dir, **cfg)[0]
    if kind == "char":
        cfg["split"] = "char"
    return WordTokenizer.train(lines, specials=SEQ_SPECIALS, **cfg)


# the settings each kind's trainer takes (``char`` is a WordTokenizer over characters)
TOKENIZER_SETTINGS = {"sentencepiece": ("vocab_size", "model_type", "character_coverage"),
                      "word": ("min_freq", "max_size", "lower"), "char": ("min_freq", "max_size", "lower")}


def _settings_for(kind: str, cfg: dict[str, Any]) -> dict[str, Any]:
    """``cfg`` less the settings of other kinds (a config written for sentencepiece switched to
    ``kind=char`` on the command line), which are named in one warning; a key no kind takes is a
    :class:`ConfigError` listing the ones this kind accepts."""
    ours = TOKENIZER_SETTINGS[kind]
    known = {k for keys in TOKENIZER_SETTINGS.values() for k in keys}
    unknown = sorted(k for k in cfg if k not in known)
    if unknown:
        raise ConfigError(f"tokenizer: unknown setting(s) {', '.join(unknown)}; kind={kind} takes {', '.join(ours)}")
    other = sorted(k for k in cfg if k not in ours)
    if other:
        import warnings

        warnings.warn(f"tokenizer kind={kind}: {', '.join(f'{k}={cfg[k]}' for k in other)} not used (settings of "
                      "another kind)", UserWarning, stacklevel=3)
    return {k: v for k, v in cfg.items() if k in ours}
