"""seqgen: sequence and generative deep learning recipes on PyTorch, Lightning and Hydra.

Layout (arrows point one way):
    seqgen.nets     plain torch modules (no Lightning, no files)
    seqgen.models   LightningModules, one per training objective
    seqgen.data     datasets, downloads, tokenizers, LightningDataModules
    seqgen.train    run(cfg) -> metrics, wiring the three together from a Hydra config
"""

__version__ = "0.1.0"
