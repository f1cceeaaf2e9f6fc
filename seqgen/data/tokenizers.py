"""Tokenizers with one protocol (``seqgen.contracts.Tokenizer``), implemented by the character,
word and sentencepiece tokenizers alike:

* ``encode(text, bos=False, eos=False) -> ids``: ``<bos>``/``<eos>`` only when asked (an error
  when the vocabulary has no such token);
* ``decode(ids) -> text``: special tokens dropped (``<unk>`` shown as U+FFFD by the character
  tokenizer; a word-level ``<eos>`` is the line break it stands for in a language-model stream);
* ``specials``: ``{"pad": id, "unk": id, "bos": id, "eos": id}`` for the ones the vocabulary has;
* ``piece(id)``: the token's own string (plot labels);
* ``vocab_size``; ``state()`` / ``Tokenizer.from_state(state)`` (plain data, inside checkpoints that
  load with ``torch.load(weights_only=True)``); ``save(path)`` / ``Tokenizer.load(path)``.

``char`` always means :class:`CharTokenizer`: a language model's vocabulary (``<unk>`` only, sorted
characters) or a classification/translation one (:data:`SEQ_SPECIALS` at ids 0-3, characters by
frequency) differ in their ``specials``, not in their class.
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
_SPECIAL_NAMES = {PAD: "pad", UNK: "unk", BOS: "bos", EOS: "eos"}


def _with_unk(specials: Sequence[str]) -> list[str]:
    """The special tokens, ``<unk>`` first unless listed: every vocabulary has it."""
    return list(specials) if UNK in specials else [UNK, *specials]


class Tokenizer:
    """The shared part. Subclasses register themselves by ``kind`` for :meth:`from_state`."""

    kind: ClassVar[str] = ""
    registry: ClassVar[dict[str, type[Tokenizer]]] = {}

    def __init_subclass__(cls, **kw: Any) -> None:
        super().__init_subclass__(**kw)
        if cls.kind:
            Tokenizer.registry[cls.kind] = cls

    @property
    def vocab_size(self) -> int:
        raise NotImplementedError

    @property
    def specials(self) -> dict[str, int]:
        raise NotImplementedError

    def _encode(self, text: str) -> list[int]:
        raise NotImplementedError

    def encode(self, text: str, bos: bool = False, eos: bool = False) -> list[int]:
        ids = self._encode(text)
        if not (bos or eos):
            return ids
        sp = self.specials
        for wanted, name in ((bos, "bos"), (eos, "eos")):
            if wanted and name not in sp:
                raise DataError(f"this {self.kind} vocabulary has no <{name}> token")
        return ([sp["bos"]] if bos else []) + ids + ([sp["eos"]] if eos else [])

    def decode(self, ids: Iterable[int]) -> str:
        raise NotImplementedError

    def piece(self, i: int) -> str:
        raise NotImplementedError

    def _check_id(self, i: int) -> int:
        i = int(i)
        if not 0 <= i < self.vocab_size:
            raise DataError(f"token id {i} is outside the vocabulary (size {self.vocab_size})")
        return i

    def state(self) -> dict[str, Any]:
        raise NotImplementedError

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Tokenizer:
        kind = state.get("kind")
        if kind not in Tokenizer.registry:
            raise DataError(f"unknown tokenizer kind {kind!r}; known: {sorted(Tokenizer.registry)}")
        return Tokenizer.registry[kind]._from_state(state)

    @classmethod
    def _from_state(cls, state: dict[str, Any]) -> Tokenizer:
        raise NotImplementedError

    def save(self, path: str | os.PathLike) -> None:
        path = Path(path)
        from seqgen.locks import unique_temp

        tmp = unique_temp(path)
        tmp.write_text(json.dumps(self.state(), ensure_ascii=False))
        os.replace(tmp, path)

    @staticmethod
    def load(path: str | os.PathLike) -> Tokenizer:
        return Tokenizer.from_state(json.loads(Path(path).read_text()))


class _Vocabulary(Tokenizer):
    """A token list ``itos`` whose first entries are its ``special_tokens``."""

    def __init__(self, itos: Sequence[str], special_tokens: Sequence[str], lower: bool = False):
        special_tokens = _with_unk(special_tokens)
        self.itos = list(itos)
        if self.itos[: len(special_tokens)] != special_tokens:
            raise DataError(f"{type(self).__name__}: vocabulary must start with its specials {special_tokens}")
        if len(set(self.itos)) != len(self.itos):
            raise DataError(f"{type(self).__name__}: duplicate tokens in vocabulary")
        self.special_tokens, self.lower = special_tokens, lower
        self.stoi = {w: i for i, w in enumerate(self.itos)}
        self.unk_id = self.stoi[UNK]

    def _cased(self, text: str) -> str:
        return text.lower() if self.lower else text

    @property
    def vocab_size(self) -> int:
        return len(self.itos)

    @property
    def specials(self) -> dict[str, int]:
        return {_SPECIAL_NAMES[t]: self.stoi[t] for t in self.special_tokens if t in _SPECIAL_NAMES}

    def piece(self, i: int) -> str:
        return self.itos[self._check_id(i)]

    def _surface(self, ids: Iterable[int], unk: str, eos: str | None = None) -> list[str]:
        """The tokens of ``ids`` as text shows them: ``<unk>`` as ``unk``, ``<eos>`` as ``eos``
        (dropped when None), the other specials dropped."""
        out = []
        for i in ids:
            tok = self.itos[self._check_id(i)]
            if tok == UNK:
                out.append(unk)
            elif tok == EOS and eos is not None:
                out.append(eos)
            elif tok not in self.special_tokens:
                out.append(tok)
        return out

    @staticmethod
    def _ranked(counts: Counter[str], special_tokens: Sequence[str], min_freq: int, max_size: int | None) -> list[str]:
        """Tokens by frequency (ties alphabetical: the same vocabulary every run), cut by
        ``min_freq`` and ``max_size`` (specials included in the size)."""
        if min_freq < 1:
            raise ConfigError(f"min_freq must be >= 1, got {min_freq}")
        words = [w for w, c in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
                 if c >= min_freq and w not in special_tokens]
        if max_size is not None:
            if max_size <= len(special_tokens):
                raise ConfigError(f"max_size={max_size} leaves no room beyond the {len(special_tokens)} special tokens")
            words = words[: max_size - len(special_tokens)]
        return words


class CharTokenizer(_Vocabulary):
    """One id per character seen in the training text, after the ``specials`` (``<unk>`` at least;
    unseen characters map to it). A language model's vocabulary is ``<unk>`` and the sorted
    characters (:meth:`train` on the text); a classification/translation one puts
    :data:`SEQ_SPECIALS` first and orders characters by frequency (``by_frequency=True``)."""

    kind = "char"

    def __init__(self, chars: Sequence[str], specials: Sequence[str] = (UNK,), lower: bool = False):
        specials = _with_unk(specials)
        super().__init__([*specials, *(c for c in chars if c not in specials)], specials, lower)

    @classmethod
    def train(cls, text: str | Iterable[str], specials: Sequence[str] = (UNK,), min_freq: int = 1,
              max_size: int | None = None, lower: bool = False, by_frequency: bool = False) -> CharTokenizer:
        """From a text (or its lines): every character (``by_frequency=False``: sorted), or the
        ones seen ``min_freq`` times, most frequent first, at most ``max_size`` with the specials."""
        counts: Counter[str] = Counter()
        for line in [text] if isinstance(text, str) else text:
            counts.update(line.lower() if lower else line)
        if not counts:
            raise DataError("cannot build a character vocabulary from an empty text")
        specials = _with_unk(specials)
        if by_frequency or min_freq > 1 or max_size is not None:
            chars = cls._ranked(counts, specials, min_freq, max_size)
        else:
            chars = sorted(c for c in counts if c not in specials)
        return cls(chars, specials, lower)

    def _encode(self, text: str) -> list[int]:
        get, unk = self.stoi.get, self.unk_id
        return [get(c, unk) for c in self._cased(text)]

    def unknown(self, text: str) -> list[str]:
        """Characters of ``text`` that are not in the vocabulary (they would encode as ``<unk>``)."""
        return sorted({c for c in self._cased(text) if c not in self.stoi})

    def decode(self, ids: Iterable[int]) -> str:
        return "".join(self._surface(ids, unk="\ufffd"))

    def state(self) -> dict[str, Any]:
        return {"kind": self.kind, "chars": self.itos[len(self.special_tokens):], "specials": self.special_tokens,
                "lower": self.lower}

    @classmethod
    def _from_state(cls, state: dict[str, Any]) -> CharTokenizer:
        return cls(state["chars"], state.get("specials", [UNK]), state.get("lower", False))


class WordTokenizer(_Vocabulary):
    """Whitespace word vocabulary with specials, ``min_freq`` and ``max_size``.

    ``specials`` come first (``<unk>`` always present); the rest is ordered by frequency,
    ties broken alphabetically, so the vocabulary is the same on every run.
    """

    kind = "word"

    def __init__(self, itos: Sequence[str], specials: Sequence[str] = (UNK, EOS), lower: bool = False):
        super().__init__(itos, specials, lower)

    @classmethod
    def train(cls, lines: Iterable[str], min_freq: int = 1, max_size: int | None = None,
              specials: Sequence[str] = (UNK, EOS), lower: bool = False) -> WordTokenizer:
        counts: Counter[str] = Counter()
        for line in lines:
            counts.update((line.lower() if lower else line).split())
        if not counts:
            raise DataError("cannot build a word vocabulary from an empty corpus")
        specials = _with_unk(specials)
        return cls([*specials, *cls._ranked(counts, specials, min_freq, max_size)], specials=specials, lower=lower)

    def tokens(self, text: str) -> list[str]:
        return self._cased(text).split()

    def _encode(self, text: str) -> list[int]:
        get, unk = self.stoi.get, self.unk_id
        return [get(w, unk) for w in self.tokens(text)]

    def decode(self, ids: Iterable[int]) -> str:
        words = self._surface(ids, unk=UNK, eos="\n")
        return " ".join(words).replace(" \n ", "\n").replace(" \n", "\n")

    def state(self) -> dict[str, Any]:
        return {"kind": self.kind, "itos": self.itos, "specials": self.special_tokens, "lower": self.lower}

    @classmethod
    def _from_state(cls, state: dict[str, Any]) -> Tokenizer:
        if state.get("split") == "char":  # written before character vocabularies were CharTokenizers
            n = len(state["specials"])
            return CharTokenizer(state["itos"][n:], state["specials"], state.get("lower", False))
        return cls(state["itos"], specials=state["specials"], lower=state.get("lower", False))


def load_tokenizer(path_or_state: str | os.PathLike | dict[str, Any]) -> Tokenizer:
    if isinstance(path_or_state, dict):
        return Tokenizer.from_state(path_or_state)
    return Tokenizer.load(path_or_state)


SEQ_SPECIALS = (PAD, UNK, BOS, EOS)  # ids 0-3 for classification and translation vocabularies


class SentencePieceTokenizer(Tokenizer):
    """Subword units (Kudo & Richardson 2018): ``model_type`` ``bpe`` or ``unigram``, trained on
    the training split only. Ids: ``<pad>`` 0, ``<unk>`` 1, ``<bos>`` 2, ``<eos>`` 3, like
    the vocabularies with :data:`SEQ_SPECIALS`. The serialized model travels as text
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
        from seqgen.locks import locked, unique_temp

        # concurrent runs with the same data and settings: one trains, the others wait and reuse it
        with locked(path):
            if path.is_file():
                return cls(path.read_bytes()), True
            tok = cls.train(lines, **opts)
            tmp = unique_temp(path)
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

    @property
    def specials(self) -> dict[str, int]:
        return {"pad": self.pad_id, "unk": self.unk_id, "bos": self.bos_id, "eos": self.eos_id}

    def pieces(self, text: str) -> list[str]:
        return self.sp.encode(text, out_type=str)

    def piece(self, i: int) -> str:
        return self.sp.id_to_piece(self._check_id(i))

    def _encode(self, text: str) -> list[int]:
        return self.sp.encode(text)

    def decode(self, ids: Iterable[int]) -> str:
        drop = (self.pad_id, self.bos_id, self.eos_id)
        return self.sp.decode([i for i in (self._check_id(i) for i in ids) if i not in drop])

    def state(self) -> dict[str, Any]:
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
    ``sentencepiece`` models are cached in ``cache_dir``."""
    cfg = dict(cfg)
    kind = cfg.pop("kind", kinds[0])
    if kind not in kinds:
        raise ConfigError(f"unknown tokenizer kind {kind!r}; available: {', '.join(kinds)}")
    cfg = _settings_for(kind, cfg)
    if kind == "sentencepiece":
        return SentencePieceTokenizer.train_cached(lines, cache_dir, **cfg)[0]
    if kind == "char":
        return CharTokenizer.train(lines, specials=SEQ_SPECIALS, by_frequency=True, **cfg)
    return WordTokenizer.train(lines, specials=SEQ_SPECIALS, **cfg)


# the settings each kind's trainer takes
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
