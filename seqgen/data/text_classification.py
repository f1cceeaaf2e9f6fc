"""Text classification data: real readers, vocabularies from the training split, bucketed batches.

``dataset``:

* ``langid_multi30k`` -- which language (de, en, fr) a Multi30k caption is in: the raw task-1
  files (md5-checked), every caption of a split once per language; offline-ready with
  ``SEQGEN_DATA_DIR`` holding ``multi30k/``.
* ``ag_news`` -- ``ag_news/{train,test}.csv`` (Zhang et al. 2015: ``"class","title","description"``,
  classes 1-4, no header; torchtext's URLs and md5s).
* ``sst2`` -- GLUE ``SST-2.zip`` (``SST-2/{train,dev}.tsv`` with a ``sentence\\tlabel`` header; the
  unlabelled GLUE test split is not used: dev is the test set, validation is held out of train).
* ``imdb`` -- ``aclImdb_v1.tar.gz`` (Maas et al. 2011; ``aclImdb/{train,test}/{neg,pos}/*.txt``).
* ``table`` -- any CSV/TSV files by column names (``train_file``, ``test_file``, ``text_column``,
  ``label_column``, ``delimiter``).

Batches are ``(tokens (B, T) padded with 0, labels (B,))``; training batches come from a
:class:`~seqgen.data.text.BucketBatchSampler`. ``tokenizer``: ``{"kind": "word", "min_freq",
"max_size", "lower"}`` or ``{"kind": "sentencepiece", "vocab_size", "model_type"}`` (cached in
``data_dir``), built on the training split only.
"""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from seqgen.data.download import Resource, default_data_dir, extract_once, fetch
from seqgen.data.registry import ReaderDataModule, Readers
from seqgen.data.splits import stratified_split, subsample
from seqgen.data.text import PaddedRows, bucket_loader
from seqgen.data.tokenizers import Tokenizer, train_seq_tokenizer
from seqgen.errors import ConfigError, DataError

AG_NEWS_BASE = "https://raw.githubusercontent.com/mhjabreel/CharCnn_Keras/master/data/ag_news_csv/"
AG_NEWS_MD5 = {"train": "b1a00f826fdfbd249f79597b59e1dc12", "test": "d52ea96a97a2d943681189a97654912d"}
AG_NEWS_CLASSES = ["World", "Sports", "Business", "Sci/Tech"]
SST2 = Resource("sst2/SST-2.zip", ("https://dl.fbaipublicfiles.com/glue/data/SST-2.zip",), md5="9f81648d4199384278b86e315dac217c")
IMDB = Resource("imdb/aclImdb_v1.tar.gz", ("https://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz",),
                md5="7c2ac02c03563afcf9b574c7e56c153a")
LANGS = ("de", "en", "fr")


def ag_news_resource(split: str) -> Resource:
    return Resource(f"ag_news/{split}.csv", (AG_NEWS_BASE + f"{split}.csv",), md5=AG_NEWS_MD5[split])


def read_ag_news_csv(path: str | Path) -> tuple[list[str], list[int]]:
    """AG News CSV: ``"3","title","description"`` per row, classes 1-4 -> 0-3; ``\\`` in the
    text marks a line break in the source and becomes a space."""
    texts, labels = [], []
    with open(path, encoding="utf-8", newline="") as f:
        for i, row in enumerate(csv.reader(f), 1):
            if len(row) < 3 or not row[0].strip().isdigit() or not 1 <= int(row[0]) <= 4:
                raise DataError(f"{path}:{i}: expected \"class(1-4)\",\"title\",\"description\", got {row[:3]!r}")
            text = " ".join(row[1:]).replace("\\n", " ").replace("\\", " ")
            texts.append(" ".join(text.split()))
            labels.append(int(row[0]) - 1)
    if not texts:
        raise DataError(f"{path}: no rows")
    return texts, labels


def read_table(source: str | Path | io.StringIO, text_column: str, label_column: str, delimiter: str = ",",
               label_map: dict[str, int] | None = None) -> tuple[list[str], list[str]]:
    """Rows of a CSV/TSV file with a header; returns (texts, raw labels as strings)."""
    f = open(source, encoding="utf-8", newline="") if not isinstance(source, io.StringIO) else source
    with f:
        reader = csv.DictReader(f, delimiter=delimiter, quoting=csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL)
        cols = reader.fieldnames or []
        for c in (text_column, label_column):
            if c not in cols:
                raise DataError(f"{source}: no column {c!r}; columns: {', '.join(cols)}")
        texts, labels = [], []
        for row in reader:
            texts.append(row[text_column])
            labels.append(row[label_column])
    if not texts:
        raise DataError(f"{source}: no rows")
    return texts, labels


def read_imdb_folder(root: str | Path, split: str) -> tuple[list[str], list[int]]:
    """``<root>/<split>/neg/*.txt`` (label 0) and ``pos`` (label 1), ``<br />`` removed."""
    texts, labels = [], []
    for label, name in enumerate(("neg", "pos")):
        folder = Path(root) / split / name
        if not folder.is_dir():
            raise DataError(f"IMDB: missing folder {folder} (expected aclImdb/{{train,test}}/{{neg,pos}}/*.txt)")
        for p in sorted(folder.glob("*.txt")):
            texts.append(re.sub(r"<br\s*/?>", " ", p.read_text(encoding="utf-8")))
            labels.append(label)
    return texts, labels


# -- the text classification datasets: one reader each ---------------------------------------------
# read(dm) -> ({"train": (texts, labels)[, "val": ...], "test": ...}, class names)
TEXT_DATASETS = Readers("text classification")
Texts = dict[str, tuple[list[str], list[int]]]


@TEXT_DATASETS.register("langid_multi30k")
def read_langid_multi30k(dm: Any) -> tuple[Texts, list[str]]:
    """Which language (de, en, fr) a Multi30k caption is in: every caption of a split once per language."""
    from seqgen.data.corpora import multi30k_lines

    out = {}
    for split in ("train", "val", "test"):
        texts, labels = [], []
        for k, lang in enumerate(LANGS):
            lines = [ln for ln in multi30k_lines(dm.data_dir, split, lang) if ln.strip()]
            texts += lines
            labels += [k] * len(lines)
        out[split] = (texts, labels)
    return out, list(LANGS)


@TEXT_DATASETS.register("ag_news", resources=lambda dm: [ag_news_resource(s) for s in ("train", "test")])
def read_ag_news(dm: Any) -> tuple[Texts, list[str]]:
    return {s: read_ag_news_csv(fetch(ag_news_resource(s), dm.data_dir)) for s in ("train", "test")}, list(AG_NEWS_CLASSES)


@TEXT_DATASETS.register("sst2", resources=lambda dm: [SST2])
def read_sst2(dm: Any) -> tuple[Texts, list[str]]:
    folder = _extracted(fetch(SST2, dm.data_dir), Path(dm.data_dir) / "sst2", "SST-2/dev.tsv")
    out = {}
    for split, name in (("train", "train.tsv"), ("test", "dev.tsv")):
        texts, labels = read_table(_find(folder, f"SST-2/{name}"), "sentence", "label", "\t")
        out[split] = (texts, [int(v) for v in labels])
    return out, ["negative", "positive"]


@TEXT_DATASETS.register("imdb", resources=lambda dm: [IMDB])
def read_imdb(dm: Any) -> tuple[Texts, list[str]]:
    folder = _extracted(fetch(IMDB, dm.data_dir), Path(dm.data_dir) / "imdb", "aclImdb/test/pos")
    base = _find(folder, "aclImdb")
    return {s: read_imdb_folder(base, s) for s in ("train", "test")}, ["negative", "positive"]


def _check_table(dm: Any) -> None:
    if not (dm.train_file and dm.test_file):
        raise ConfigError("dataset=table needs data.train_file and data.test_file (CSV/TSV with a header)")


@TEXT_DATASETS.register("table", check=_check_table)
def read_table_files(dm: Any) -> tuple[Texts, list[str]]:
    """Any CSV/TSV files by column names; the classes are the training file's sorted labels."""
    raw = {s: read_table(f, dm.text_column, dm.label_column, dm.delimiter)
           for s, f in (("train", dm.train_file), ("test", dm.test_file))}
    classes = sorted(set(raw["train"][1]))
    index = {c: i for i, c in enumerate(classes)}
    unknown = sorted(set(raw["test"][1]) - set(index))
    if unknown:
        raise DataError(f"{dm.test_file}: labels {unknown[:5]} do not occur in {dm.train_file}")
    return {s: (t, [index[v] for v in lab]) for s, (t, lab) in raw.items()}, classes


class TextClassificationDataModule(ReaderDataModule):
    READERS = TEXT_DATASETS

    def __init__(self, dataset: str = "langid_multi30k", data_dir: str | None = None, batch_size: int = 64,
                 eval_batch_size: int = 256, tokenizer: dict[str, Any] | None = None, max_len: int = 256,
                 val_fraction: float = 0.1, train_size: int | None = None, seed: int = 0, max_tokens: int | None = None,
                 train_file: str | None = None, test_file: str | None = None, text_column: str = "text",
                 label_column: str = "label", delimiter: str = ","):
        super().__init__(dataset)
        if not 0.0 < val_fraction < 1.0:
            raise ConfigError(f"data.val_fraction must be in (0, 1), got {val_fraction}")
        self.dataset, self.data_dir = dataset, str(data_dir or default_data_dir())
        self.batch_size, self.eval_batch_size, self.max_len, self.max_tokens = batch_size, eval_batch_size, max_len, max_tokens
        self.tokenizer_cfg = dict(tokenizer or {"kind": "word", "min_freq": 2, "lower": True})
        self.val_fraction, self.train_size, self.seed = val_fraction, train_size, seed
        self.train_file, self.test_file = train_file, test_file
        self.text_column, self.label_column, self.delimiter = text_column, label_column, delimiter
        self.tokenizer: Tokenizer | None = None
        self._texts: dict[str, tuple[list[str], list[int]]] = {}  # read by build_tokenizer, encoded by setup
        self.classes: list[str] = []
        self.splits: dict[str, tuple[list[list[int]], torch.Tensor]] = {}
        self.check_reader()

    def build_tokenizer(self) -> Tokenizer:
        """Read the texts and train the vocabulary (what ``dims`` needs; nothing is encoded yet)."""
        if self.tokenizer is not None:
            return self.tokenizer
        data, classes = self.reader.read(self)
        self.classes = list(classes)
        if "val" not in data:
            texts, labels = data["train"]
            keep, held = (t.tolist() for t in stratified_split(torch.tensor(labels), self.val_fraction, self.seed))
            data["val"] = ([texts[i] for i in held], [labels[i] for i in held])
            data["train"] = ([texts[i] for i in keep], [labels[i] for i in keep])
        # the vocabulary comes from all training text, labelled or not (as a language model trained on
        # the same text would have it): a few-label run shares its tokenizer with the full-data run
        self.tokenizer = train_seq_tokenizer(data["train"][0], self.tokenizer_cfg, self.data_dir, kinds=("word", "sentencepiece"))
        self._texts = data
        return self.tokenizer

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        self.build_tokenizer()
        data, self._texts = self._texts, {}
        texts, labels = data["train"]
        small = subsample(len(labels), self.train_size, self.seed + 1, labels=torch.tensor(labels))
        if small is not None:
            data["train"] = ([texts[i] for i in small], [labels[i] for i in small])
        for split, (texts, labels) in data.items():
            ids = [self.tokenizer.encode(t)[: self.max_len] or [1] for t in texts]  # an empty text becomes <unk>
            self.splits[split] = (ids, torch.tensor(labels, dtype=torch.long))

    @property
    def dims(self) -> dict[str, Any]:
        """``vocab_size`` is the tokenizer's, trained on the training split (cached for
        sentencepiece): the texts are read, nothing is encoded."""
        self.build_tokenizer()
        return {"vocab_size": self.tokenizer.vocab_size, "num_classes": len(self.classes)}

    def _collate(self, split: str):
        ids, labels = self.splits[split]
        rows = PaddedRows(ids)  # the split's tokens as one tensor, each batch padded from it
        sizes = rows.lengths

        def collate(idx: list[int]) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
            # the token counts as Python ints: a recurrent encoder packs its batch by them, which needs
            # them on the host; counted on a GPU from the tokens, they would cost a sync every step
            return rows(idx), labels[torch.as_tensor(idx)], [sizes[i] for i in idx]

        return collate

    def train_dataloader(self) -> DataLoader:
        self.setup()
        ids, _ = self.splits["train"]
        return bucket_loader([len(s) for s in ids], self.batch_size, self._collate("train"), lambda: self.trainer,
                             seed=self.seed, max_tokens=self.max_tokens)

    def _eval_loader(self, split: str) -> DataLoader:
        self.setup()
        ids, _ = self.splits[split]
        return bucket_loader([len(s) for s in ids], self.eval_batch_size, self._collate(split), lambda: self.trainer,
                             shuffle=False)

    def val_dataloader(self) -> DataLoader:
        return self._eval_loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._eval_loader("test")

    def checkpoint_extras(self) -> dict[str, Any]:
        return {"dataset": self.dataset, "classes": self.classes,
                "tokenizer": self.tokenizer.state() if self.tokenizer else None}


def _extracted(archive: Path, dest: Path, marker: str) -> Path:
    """Extract once: an archive whose ``marker`` path already exists under ``dest`` is not re-read."""
    return extract_once(archive, dest, [dest / marker])


def _find(folder: Path, rel: str) -> Path:
    for cand in (folder / rel, *folder.glob(f"*/{rel}")):
        if cand.exists():
            return cand
    raise DataError(f"{rel} not found under {folder} (was the archive complete?)")
