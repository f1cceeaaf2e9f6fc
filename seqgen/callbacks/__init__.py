"""Lightning callbacks: text samples, loss curves, seeding and checkpoint extras."""

from seqgen.callbacks.plots import LossCurves
from seqgen.callbacks.runtime import CheckpointExtras, EpochSeed, Throughput
from seqgen.callbacks.text import TextSamples

__all__ = ["CheckpointExtras", "EpochSeed", "LossCurves", "TextSamples", "Throughput"]
