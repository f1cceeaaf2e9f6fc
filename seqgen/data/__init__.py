"""Datasets, downloads, tokenizers and LightningDataModules (no models, no nets)."""

from seqgen.data.detection import DetectionDataModule
from seqgen.data.download import Resource, extract_archive, fetch, verify
from seqgen.data.graphs import GraphDataModule
from seqgen.data.images import ImageDataModule, read_idx
from seqgen.data.language_modeling import LMDataModule, TokenStream, batchify
from seqgen.data.synthetic import SyntheticSequenceDataModule
from seqgen.data.text import BucketBatchSampler, pad_batch
from seqgen.data.text_classification import TextClassificationDataModule
from seqgen.data.tokenizers import (
    CharTokenizer,
    SentencePieceTokenizer,
    Tokenizer,
    WordTokenizer,
    load_tokenizer,
)
from seqgen.data.translation import TranslationDataModule, date_pairs, read_pairs_tsv

__all__ = [
    "DetectionDataModule",
    "GraphDataModule",
    "TranslationDataModule",
    "date_pairs",
    "read_pairs_tsv",
    "BucketBatchSampler",
    "SentencePieceTokenizer",
    "TextClassificationDataModule",
    "pad_batch",
    "CharTokenizer",
    "ImageDataModule",
    "LMDataModule",
    "Resource",
    "SyntheticSequenceDataModule",
    "Tokenizer",
    "TokenStream",
    "WordTokenizer",
    "batchify",
    "extract_archive",
    "fetch",
    "load_tokenizer",
    "read_idx",
    "verify",
]
