"""LightningModules, one per training objective. Importable without Hydra."""

from seqgen.models.base import SeqgenModule
from seqgen.models.language_model import LanguageModel

__all__ = ["LanguageModel", "SeqgenModule"]
