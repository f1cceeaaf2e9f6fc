"""LightningModules, one per training objective. Importable without Hydra."""

from seqgen.models.base import SeqgenModule
from seqgen.models.classifier import Classifier
from seqgen.models.language_model import LanguageModel
from seqgen.models.sequence_model import SequenceModel

__all__ = ["Classifier", "LanguageModel", "SeqgenModule", "SequenceModel"]
