"""Language-modelling data: a token stream cut into contiguous batches for truncated BPTT.

The stream is laid out as in pytorch/examples' ``batchify``: ``B`` contiguous sub-streams, one
per batch row, so the hidden state left by chunk ``k`` of row ``b`` is the right initial
state for chunk ``k+1`` of row ``b``. Under DDP the stream is first cut into
``world_size * B`` rows and each rank keeps its own ``B`` rows: every rank sees a contiguous
shard and all ranks step the same number of times. Batches are yielded by an
``IterableDataset`` so Lightning never inserts a (shuffling, interleaving) sampler.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, IterableDataset

from seqgen.data import corpora
from seqgen.data.download import default_data_dir
from seqgen.data.registry import ReaderDataModule, Readers
from seqgen.data.sharding import current_epoch, rank_world, resume_skip
from seqgen.data.tokenizers import EOS, CharTokenizer, SentencePieceTokenizer, Tokenizer, WordTokenizer
from seqgen.errors import ConfigError, DataError
from seqgen.utils import check_positive


def batchify(stream: torch.Tensor, rows: int) -> torch.Tensor:
    """Lay a 1-D stream out as ``rows`` contiguous rows (dropping the tail that does not fit)."""
    n = stream.numel() // rows
    if n < 2:
        raise DataError(
            f"the text has {stream.numel()} tokens: too short for {rows} batch rows "
            f"(need at least {2 * rows}); use a smaller batch size or more text"
        )
    return stream[: n * rows].view(rows, n)


def chunk_lengths(total: int, bptt: int, jitter: bool, generator: torch.Generator | None) -> list[int]:
    """Chunk lengths that tile ``total - 1`` steps; with ``jitter`` as in AWD-LSTM.

    Jittered length: ``bptt`` with probability 0.95 else ``bptt / 2``, then ``N(that, 5)``,
    at least 5. The same generator state gives the same lengths on every rank.
    """
    steps = total - 1
    if not jitter:
        return [min(bptt, steps - i) for i in range(0, steps, bptt)]
    out, pos = [], 0
    while pos < steps:
        base = bptt if torch.rand(1, generator=generator).item() < 0.95 else bptt / 2
        length = max(5, int(torch.normal(base, 5.0, (1,), generator=generator).item()))
        length = min(length, steps - pos)
        out.append(length)
        pos += length
    return out


class TokenStream(IterableDataset):
    """Yields ``(input, target)`` chunks of shape ``(B, L)`` from a batchified stream."""

    def __init__(
        self,
        data: torch.Tensor,
        bptt: int,
        jitter: bool = False,
        seed: int = 0,
        epoch_fn: Callable[[], int] | None = None,
        skip_fn: Callable[[int], int] | None = None,
    ):
        super().__init__()
        self.data, self.bptt, self.jitter, self.seed = data, bptt, jitter, seed
        self.epoch_fn = epoch_fn or (lambda: 0)
        self.skip_fn = skip_fn or (lambda n: 0)

    def lengths(self) -> list[int]:
        gen = None
        if self.jitter:
            gen = torch.Generator().manual_seed(self.seed * 100003 + int(self.epoch_fn()))
        return chunk_lengths(self.data.size(1), self.bptt, self.jitter, gen)

    def __len__(self) -> int:
        return math.ceil((self.data.size(1) - 1) / self.bptt)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        lengths = self.lengths()
        skip = self.skip_fn(len(lengths))  # chunks a mid-epoch resume has already trained on
        pos = sum(lengths[:skip])
        for length in lengths[skip:]:
            yield self.data[:, pos : pos + length], self.data[:, pos + 1 : pos + 1 + length]
            pos += length




# -- the corpora: one reader each ---------------------------------------------------------------------
# read(dm) -> corpora.Corpus (train, val, test text); resources(dm) -> the files prepare_data fetches
CORPORA = Readers("language-model corpus")
CORPORA.register("pydoc")(lambda dm: corpora.pydoc_topics(seed=dm.seed))
CORPORA.register("multi30k_en", resources=lambda dm: [corpora.multi30k_resource(s, "en") for s in corpora.MULTI30K_SPLITS])(
    lambda dm: corpora.multi30k_text(dm.data_dir, "en"))
CORPORA.register("multi30k_langid", resources=lambda dm: [corpora.multi30k_resource(s, lang) for s in corpora.MULTI30K_SPLITS
                                                          for lang in ("de", "en", "fr")])(
    lambda dm: corpora.multi30k_text(dm.data_dir, ("de", "en", "fr")))
CORPORA.register("ptb", resources=lambda dm: [corpora.ptb_resource(s) for s in ("train", "val", "test")])(
    lambda dm: corpora.ptb(dm.data_dir))
for _variant in corpora.WIKITEXT:
    CORPORA.register(_variant, resources=lambda dm: [corpora.wikitext_resource(dm.corpus_name)])(
        lambda dm: corpora.wikitext(dm.data_dir, dm.corpus_name))


def _check_files(dm: Any) -> None:
    if not dm.files["train"]:
        raise ConfigError("corpus=files needs data.train=<path to a text file>")


CORPORA.register("files", check=_check_files)(lambda dm: corpora.text_files(dm.files["train"], dm.files["val"],
                                                                               dm.files["test"]))


class LMDataModule(ReaderDataModule):
    """Character- or word-level language-modelling data for truncated BPTT.

    Args:
        corpus: ``pydoc`` (CPython docs, embedded), ``multi30k_en`` (English side of Multi30k),
            ``multi30k_langid`` (the de, en and fr captions, in the order of the ``langid_multi30k``
            classification data, so a sentencepiece model trained on it is the classifier's),
            ``ptb`` (Mikolov's Penn Treebank), ``wikitext2`` / ``wikitext103`` (tokenized),
            ``wikitext2_raw``, ``wikitext103_raw``, or ``files`` (``train``/``val``/``test`` paths; val/test optional).
        level: ``char``, ``word`` (whitespace words + ``<eos>`` per line, ``<unk>`` for rare) or
            ``sentencepiece`` (``tokenizer``: ``{"vocab_size", "model_type"}``, cached in ``data_dir``;
            ids + ``<eos>`` per line).
        batch_size / eval_batch_size: rows of the batchified stream per rank.
        bptt: truncated-BPTT chunk length; ``bptt_jitter`` varies it per chunk (seeded per epoch).
    """


    READERS = CORPORA

    def __init__(
        self,
        corpus: str = "pydoc",
        level: str = "char",
        data_dir: str | None = None,
        batch_size: int = 32,
        eval_batch_size: int = 16,
        bptt: int = 100,
        bptt_jitter: bool = False,
        min_freq: int = 1,
        max_size: int | None = None,
        lower: bool = False,
        train: str | None = None,
        val: str | None = None,
        test: str | None = None,
        seed: int = 0,
        tokenizer: dict[str, Any] | None = None,
    ):
        super().__init__(corpus)
        if level not in ("char", "word", "sentencepiece"):
            raise ConfigError(f"level must be 'char', 'word' or 'sentencepiece', got {level!r}")
        for name, value in (("data.batch_size", batch_size), ("data.eval_batch_size", eval_batch_size), ("data.bptt", bptt)):
            check_positive(name, value)
        self.corpus_name, self.level = corpus, level
        self.data_dir = str(data_dir) if data_dir else str(default_data_dir())
        self.batch_size, self.eval_batch_size, self.bptt, self.bptt_jitter = batch_size, eval_batch_size, bptt, bptt_jitter
        self.min_freq, self.max_size, self.lower = min_freq, max_size, lower
        self.files = {"train": train, "val": val, "test": test}
        self.seed = seed
        self.tokenizer_cfg = dict(tokenizer or {"vocab_size": 4000, "model_type": "unigram"})
        self.tokenizer: Tokenizer | None = None
        self.streams: dict[str, torch.Tensor] = {}
        self.corpus: corpora.Corpus | None = None
        self.check_reader()

    # -- reading -------------------------------------------------------------------------
    def load_corpus(self) -> corpora.Corpus:
        return self.reader.read(self)

    def build_tokenizer(self, corpus: corpora.Corpus) -> Tokenizer:
        if self.level == "char":
            return CharTokenizer.train(corpus.train)
        if self.level == "sentencepiece":
            lines = [ln for ln in corpus.train.splitlines() if ln.strip()]
            return SentencePieceTokenizer.train_cached(lines, self.data_dir, **self.tokenizer_cfg)[0]
        return WordTokenizer.train(
            corpus.train.splitlines(), min_freq=self.min_freq, max_size=self.max_size, specials=("<unk>", EOS), lower=self.lower
        )

    def encode(self, text: str) -> torch.Tensor:
        assert self.tokenizer is not None
        if self.level == "char":
            ids = self.tokenizer.encode(text)
        else:
            ids = []
            for line in text.splitlines():
                if line.strip():
                    ids.extend(self.tokenizer.encode(line, eos=True))  # word and sentencepiece
        return torch.tensor(ids, dtype=torch.long)

    def _tokenizer_ready(self) -> Tokenizer:
        """Read the corpus and build the vocabulary (what ``dims`` needs; nothing is encoded yet)."""
        if self.tokenizer is None:
            self.corpus = self.load_corpus()
            self.tokenizer = self.build_tokenizer(self.corpus)
        return self.tokenizer

    def setup(self, stage: str | None = None) -> None:
        if self.tokenizer is not None and self.streams:
            return
        self._tokenizer_ready()
        self.streams = {s: self.encode(getattr(self.corpus, s)) for s in ("train", "val", "test")}

    # -- what models need ------------------------------------------------------------------
    @property
    def dims(self) -> dict[str, Any]:
        """``vocab_size`` is the tokenizer's, built from the training text (cached for
        sentencepiece): the corpus is read, nothing is encoded."""
        self._tokenizer_ready()
        # the level decides which metrics the model reports (bits per character only for characters)
        return {"vocab_size": self.tokenizer.vocab_size, "level": self.level}

    def unigram_bits_per_token(self, split: str = "test") -> float:
        """Cross-entropy (bits/token) of the add-one-smoothed unigram model of train on ``split``."""
        counts = torch.bincount(self.streams["train"], minlength=self.tokenizer.vocab_size).double() + 1.0
        logp = torch.log2(counts / counts.sum())
        return float(-logp[self.streams[split]].mean())

    # -- loaders -------------------------------------------------------------------------
    def _rows(self, split: str, batch_size: int) -> torch.Tensor:
        rank, world = rank_world(self.trainer)
        data = batchify(self.streams[split], batch_size * world)
        if data.size(1) - 1 < 1:
            raise DataError(f"the {split} split is too short for batch size {batch_size}")
        return data[rank * batch_size : (rank + 1) * batch_size].contiguous()

    def _epoch(self) -> int:
        return current_epoch(self.trainer)

    def _loader(self, split: str, batch_size: int, jitter: bool) -> DataLoader:
        if not self.streams:
            self.setup()
        skip = (lambda n: resume_skip(self.trainer, n)) if split == "train" else None
        dataset = TokenStream(self._rows(split, batch_size), self.bptt, jitter=jitter, seed=self.seed, epoch_fn=self._epoch,
                              skip_fn=skip)
        # a private generator: creating the iterator must not draw from the global RNG
        return DataLoader(dataset, batch_size=None, num_workers=0, generator=torch.Generator().manual_seed(self.seed))

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", self.batch_size, self.bptt_jitter)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", self.eval_batch_size, False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", self.eval_batch_size, False)

    def checkpoint_extras(self) -> dict[str, Any]:
        """Plain data saved into checkpoints so generation needs no dataset."""
        return {"tokenizer": self.tokenizer.state() if self.tokenizer else None, "level": self.level}


