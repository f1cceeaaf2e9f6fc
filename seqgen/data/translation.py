"""Translation data: parallel sentence pairs, vocabularies from the training split, bucketed batches.

``dataset``:

* ``multi30k`` -- Multi30k task 1 (Elliott et al. 2016): the raw ``{train,val,test_2016_flickr}.{de,en,fr}.gz``
  files, md5-checked; ``src_lang``/``tgt_lang`` any two of de, en, fr (29,000 / 1,014 / 1,000 pairs).
* ``tsv`` -- a tab-separated pairs file (Tatoeba/Anki ``eng-fra.txt`` style: ``source<TAB>target[<TAB>
  attribution]`` per line); ``reverse=true`` swaps the columns. Validation and test are held out
  with ``val_fraction``/``test_fraction`` (seeded). A malformed line is reported with its number.
* ``dates`` -- an embedded synthetic task: human-readable dates in many formats
  (``"Tuesday, March 4, 1997"``, ``"4.3.1997"``, ``"the 4th of march 1997"``, ...) to ISO
  ``1997-03-04``, generated from ``seed``; no download.

Each side gets a tokenizer trained on its training text only (``tokenizer``: ``{"kind":
"sentencepiece", "vocab_size", "model_type"}`` cached in ``data_dir``, ``{"kind": "word", ...}``, or
``{"kind": "char"}``), or one joint tokenizer with ``shared_vocab=true``. Ids: pad 0, unk 1, bos 2,
eos 3. A batch is a dict: ``src (B, S)`` (source ids + eos, padded), ``tgt (B, T)`` (bos + target
ids + eos, padded), ``src_text`` and ``tgt_text`` (the raw strings: references for BLEU are
never re-tokenised). Training pairs longer than ``max_len`` tokens on either side are left out
(counted in ``dropped``); evaluation pairs are all kept.
"""

from __future__ import annotations

import datetime as dt
import io
import random
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from seqgen.data.download import Resource, default_data_dir
from seqgen.data.registry import ReaderDataModule, Readers
from seqgen.data.splits import subsample
from seqgen.data.text import PaddedRows, bucket_loader
from seqgen.data.tokenizers import Tokenizer, train_seq_tokenizer
from seqgen.errors import ConfigError, DataError

PAD_ID, UNK_ID, BOS_ID, EOS_ID = 0, 1, 2, 3
Pairs = tuple[list[str], list[str]]


def read_pairs_tsv(path: str | Path, reverse: bool = False) -> Pairs:
    """``source<TAB>target[<TAB>...]`` per line (blank lines skipped); ``reverse`` swaps the columns."""
    src, tgt = [], []
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        raise DataError(f"pairs file {path} does not exist (expected source<TAB>target per line, "
                        "e.g. Anki's eng-fra.txt from https://www.manythings.org/anki/)") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line_no = raw[: e.start].count(b"\n") + 1
        raise DataError(f"{path}:{line_no}: not UTF-8 text ({e.reason} at byte {e.start}); save the file as UTF-8") from None
    with io.StringIO(text, newline=None) as f:  # universal newlines, as open() in text mode
        for i, line in enumerate(f, 1):
            line = line.rstrip("\r\n")
            if not line.strip():
                continue
            cols = line.split("\t")
            if len(cols) < 2 or not cols[0].strip() or not cols[1].strip():
                raise DataError(f"{path}:{i}: expected 'source<TAB>target', got {line[:80]!r}")
            a, b = cols[0].strip(), cols[1].strip()
            src.append(b if reverse else a)
            tgt.append(a if reverse else b)
    if not src:
        raise DataError(f"{path}: no sentence pairs")
    return src, tgt


_ORD = {1: "st", 2: "nd", 3: "rd", 21: "st", 22: "nd", 23: "rd", 31: "st"}


def human_date(d: dt.date, style: int) -> str:
    """One of 12 human-readable renderings of ``d`` (names in English, numbers day-first)."""
    month, mon, wday = d.strftime("%B"), d.strftime("%b"), d.strftime("%A")
    day, year = d.day, d.year
    forms = [
        f"{day} {month} {year}", f"{month} {day}, {year}", f"{day} {mon} {year}", f"{wday}, {month} {day}, {year}",
        f"{day:02d}.{d.month:02d}.{year}", f"{day}.{d.month}.{year}", f"{year}/{d.month:02d}/{day:02d}",
        f"{mon.upper()} {day:02d} {year}", f"the {day}{_ORD.get(day, 'th')} of {month.lower()} {year}",
        f"{wday[:3]} {day} {mon} {year}", f"{day:02d}/{d.month:02d}/{year}", f"{month.lower()} {day} {year}",
    ]
    return forms[style % len(forms)]


DATE_STYLES = 12


def date_pairs(n: int, seed: int = 0, exclude: set[str] | None = None,
               start: dt.date = dt.date(1950, 1, 1), end: dt.date = dt.date(2049, 12, 31)) -> Pairs:
    """``n`` distinct (human-readable, ISO) date pairs, none of whose sources is in ``exclude``."""
    rng = random.Random(seed)
    span = (end - start).days
    seen = set(exclude or ())
    src, tgt = [], []
    while len(src) < n:
        d = start + dt.timedelta(days=rng.randrange(span + 1))
        text = human_date(d, rng.randrange(DATE_STYLES))
        if text in seen:
            continue
        seen.add(text)
        src.append(text)
        tgt.append(d.isoformat())
    return src, tgt


# -- the translation datasets: one reader each -------------------------------------------------------
# read(dm) -> {"train": (sources, targets), "val": ..., "test": ...}
TRANSLATION_DATASETS = Readers("translation")
MULTI30K_LANGS = ("de", "en", "fr")


def _check_multi30k(dm: Any) -> None:
    if dm.src_lang not in MULTI30K_LANGS or dm.tgt_lang not in MULTI30K_LANGS or dm.src_lang == dm.tgt_lang:
        raise ConfigError(f"multi30k: src_lang and tgt_lang must be two different of {MULTI30K_LANGS}, "
                          f"got {dm.src_lang!r} -> {dm.tgt_lang!r}")


def _multi30k_resources(dm: Any) -> list[Resource]:
    from seqgen.data import corpora

    return [corpora.multi30k_resource(split, lang) for split in corpora.MULTI30K_SPLITS for lang in (dm.src_lang, dm.tgt_lang)]


@TRANSLATION_DATASETS.register("multi30k", resources=_multi30k_resources, check=_check_multi30k)
def read_multi30k(dm: Any) -> dict[str, Pairs]:
    """Multi30k task 1 (Elliott et al. 2016), any two of de/en/fr; empty lines on either side dropped."""
    from seqgen.data.corpora import multi30k_lines

    out = {}
    for split in ("train", "val", "test"):
        s, t = multi30k_lines(dm.data_dir, split, dm.src_lang), multi30k_lines(dm.data_dir, split, dm.tgt_lang)
        if len(s) != len(t):
            raise DataError(f"multi30k {split}: {len(s)} {dm.src_lang} lines but {len(t)} {dm.tgt_lang} lines")
        keep = [i for i in range(len(s)) if s[i].strip() and t[i].strip()]
        out[split] = ([s[i] for i in keep], [t[i] for i in keep])
    return out


@TRANSLATION_DATASETS.register("dates")
def read_dates(dm: Any) -> dict[str, Pairs]:
    """Human-written dates -> ISO 8601, generated (seeded); no date in two splits."""
    test = date_pairs(dm.num_eval, dm.seed + 1)
    val = date_pairs(dm.num_eval, dm.seed + 2, exclude=set(test[0]))
    train = date_pairs(dm.num_train, dm.seed, exclude=set(test[0]) | set(val[0]))
    return {"train": train, "val": val, "test": test}


def _check_tsv(dm: Any) -> None:
    if not dm.pairs_file:
        raise ConfigError("dataset=tsv needs data.pairs_file=<source<TAB>target file>")


@TRANSLATION_DATASETS.register("tsv", check=_check_tsv)
def read_tsv(dm: Any) -> dict[str, Pairs]:
    """``source<TAB>target`` lines (Tatoeba/ManyThings style); val and test held out at random (seeded)."""
    src, tgt = read_pairs_tsv(dm.pairs_file, dm.reverse)
    n = len(src)
    n_val, n_test = int(round(n * dm.val_fraction)), int(round(n * dm.test_fraction))
    if n - n_val - n_test < 1 or n_val < 1 or n_test < 1:
        raise DataError(f"{dm.pairs_file}: {n} pairs are too few for val_fraction={dm.val_fraction} and "
                        f"test_fraction={dm.test_fraction}")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(dm.seed)).tolist()
    parts = {"test": order[:n_test], "val": order[n_test:n_test + n_val], "train": order[n_test + n_val:]}
    return {k: ([src[i] for i in idx], [tgt[i] for i in idx]) for k, idx in parts.items()}


class TranslationDataModule(ReaderDataModule):
    READERS = TRANSLATION_DATASETS

    def __init__(self, dataset: str = "multi30k", src_lang: str = "de", tgt_lang: str = "en", data_dir: str | None = None,
                 batch_size: int = 64, eval_batch_size: int = 256, max_tokens: int | None = None,
                 tokenizer: dict[str, Any] | None = None, shared_vocab: bool = False, max_len: int = 80,
                 train_size: int | None = None, seed: int = 0, pairs_file: str | None = None, reverse: bool = False,
                 val_fraction: float = 0.05, test_fraction: float = 0.05, num_train: int = 20000, num_eval: int = 1000):
        super().__init__(dataset)
        for name, v in (("batch_size", batch_size), ("eval_batch_size", eval_batch_size), ("max_len", max_len),
                        ("num_train", num_train), ("num_eval", num_eval)):
            if not isinstance(v, int) or v <= 0:
                raise ConfigError(f"data.{name} must be a positive integer, got {v!r}")
        self.dataset, self.src_lang, self.tgt_lang = dataset, src_lang, tgt_lang
        self.data_dir = str(data_dir or default_data_dir())
        self.batch_size, self.eval_batch_size, self.max_tokens = batch_size, eval_batch_size, max_tokens
        self.tokenizer_cfg = dict(tokenizer or {"kind": "sentencepiece", "vocab_size": 8000, "model_type": "bpe"})
        self.shared_vocab, self.max_len, self.train_size, self.seed = shared_vocab, max_len, train_size, seed
        self.pairs_file, self.reverse = pairs_file, reverse
        self.val_fraction, self.test_fraction = val_fraction, test_fraction
        self.num_train, self.num_eval = num_train, num_eval
        self.src_tokenizer: Tokenizer | None = None
        self.tgt_tokenizer: Tokenizer | None = None
        self.texts: dict[str, Pairs] = {}
        self.ids: dict[str, tuple[list[list[int]], list[list[int]]]] = {}
        self.dropped = 0
        self.check_reader()

    def _tokenizer(self, lines: list[str]) -> Tokenizer:
        return train_seq_tokenizer(lines, self.tokenizer_cfg, self.data_dir, kinds=("sentencepiece", "word", "char"))

    def build_tokenizers(self) -> tuple[Tokenizer, Tokenizer]:
        """Read the pairs and train the vocabularies (what ``dims`` needs; nothing is encoded yet)."""
        if self.src_tokenizer is not None and self.tgt_tokenizer is not None:
            return self.src_tokenizer, self.tgt_tokenizer
        texts = self.reader.read(self)
        idx = subsample(len(texts["train"][0]), self.train_size, self.seed + 1)
        if idx is not None:
            texts["train"] = tuple([side[i] for i in idx] for side in texts["train"])  # type: ignore[assignment]
        src_train, tgt_train = texts["train"]
        if self.shared_vocab:
            self.src_tokenizer = self.tgt_tokenizer = self._tokenizer(src_train + tgt_train)
        else:
            self.src_tokenizer, self.tgt_tokenizer = self._tokenizer(src_train), self._tokenizer(tgt_train)
        self.texts = texts
        return self.src_tokenizer, self.tgt_tokenizer

    def setup(self, stage: str | None = None) -> None:
        if self.ids:
            return
        self.build_tokenizers()
        texts = self.texts
        for split, (src, tgt) in texts.items():
            s_ids = [self.src_tokenizer.encode(x) for x in src]
            t_ids = [self.tgt_tokenizer.encode(x) for x in tgt]
            if split == "train":
                keep = [i for i in range(len(s_ids)) if 0 < len(s_ids[i]) <= self.max_len and 0 < len(t_ids[i]) <= self.max_len]
                self.dropped = len(s_ids) - len(keep)
                if not keep:
                    raise DataError(f"no training pair fits data.max_len={self.max_len} tokens")
                self.texts[split] = ([src[i] for i in keep], [tgt[i] for i in keep])
                s_ids, t_ids = [s_ids[i] for i in keep], [t_ids[i] for i in keep]
            self.ids[split] = ([source_ids(s, self.max_len) for s in s_ids], [[BOS_ID, *t, EOS_ID] for t in t_ids])

    @property
    def dims(self) -> dict[str, Any]:
        """The vocabularies' sizes: the pairs are read and the tokenizers trained, nothing is encoded."""
        self.build_tokenizers()
        return {"src_vocab_size": self.src_tokenizer.vocab_size, "tgt_vocab_size": self.tgt_tokenizer.vocab_size,
                "pad_id": PAD_ID, "bos_id": BOS_ID, "eos_id": EOS_ID}

    # -- text <-> ids -------------------------------------------------------------------------
    def decode_target(self, ids: list[int]) -> str:
        return decode_ids(self.tgt_tokenizer, ids)

    # -- loaders ------------------------------------------------------------------------------
    def _collate(self, split: str):
        src_ids, tgt_ids = self.ids[split]
        src_text, tgt_text = self.texts[split]
        src_rows, tgt_rows = PaddedRows(src_ids, PAD_ID), PaddedRows(tgt_ids, PAD_ID)  # padded once, gathered a batch at a time
        src_lengths = [max(1, n) for n in src_rows.lengths]

        def collate(idx: list[int]) -> dict[str, Any]:
            batch = {"src": src_rows(idx), "tgt": tgt_rows(idx),
                     # the source lengths as Python ints: packing needs them on the CPU, and a list stays
                     # there when the batch moves to the GPU (no device-to-host read per step)
                     "src_lengths": [src_lengths[i] for i in idx]}
            if split != "train":  # texts and positions, for BLEU and the gathered translations only
                batch.update(src_text=[src_text[i] for i in idx], tgt_text=[tgt_text[i] for i in idx],
                             index=torch.as_tensor(idx, dtype=torch.long))
            return batch

        return collate

    def _loader(self, split: str, batch_size: int, shuffle: bool) -> DataLoader:
        self.setup()
        src_ids, tgt_ids = self.ids[split]
        lengths = [max(len(s), len(t)) for s, t in zip(src_ids, tgt_ids)]
        return bucket_loader(lengths, batch_size, self._collate(split), lambda: self.trainer,
                             seed=self.seed, shuffle=shuffle, max_tokens=self.max_tokens if shuffle else None)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", self.batch_size, True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", self.eval_batch_size, False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", self.eval_batch_size, False)

    def checkpoint_extras(self) -> dict[str, Any]:
        return {"dataset": self.dataset, "src_lang": self.src_lang, "tgt_lang": self.tgt_lang, "max_len": self.max_len,
                "src_tokenizer": self.src_tokenizer.state() if self.src_tokenizer else None,
                "tgt_tokenizer": self.tgt_tokenizer.state() if self.tgt_tokenizer else None}


def source_ids(ids: list[int], max_len: int) -> list[int]:
    """What the encoder reads: the source ids cut to ``max_len``, then ``<eos>``."""
    return [*ids[:max_len], EOS_ID]


def decode_ids(tokenizer: Tokenizer, ids: list[int]) -> str:
    """Target ids -> text: cut at the first eos, drop pad/bos, detokenise."""
    out = []
    for i in ids:
        i = int(i)
        if i == EOS_ID:
            break
        if i not in (PAD_ID, BOS_ID):
            out.append(i)
    return tokenizer.decode(out)
