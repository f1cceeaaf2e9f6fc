"""Lightning callbacks: text samples, loss curves, seeding and checkpoint extras."""

from seqgen.callbacks.images import ImageGrids
from seqgen.callbacks.plots import ConfusionMatrixPlot, LossCurves, NodeEmbeddingPlot
from seqgen.callbacks.runtime import (
    CheckpointExtras,
    EpochSeed,
    FiniteGuard,
    GracefulInterrupt,
    ModelSummary,
    ProgressBar,
    RunCheckpoint,
    Throughput,
)
from seqgen.callbacks.text import TextSamples
from seqgen.callbacks.translation import TranslationSamples

__all__ = ["CheckpointExtras", "ConfusionMatrixPlot", "ImageGrids", "EpochSeed", "FiniteGuard", "GracefulInterrupt", "LossCurves", "ModelSummary", "NodeEmbeddingPlot", "ProgressBar", "RunCheckpoint", "TextSamples", "Throughput", "TranslationSamples"]
