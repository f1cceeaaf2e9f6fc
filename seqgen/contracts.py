"""What the parts of a run ask of one another, declared once as ``typing.Protocol``s.

``seqgen.train`` and the callbacks ask a model or a data module for these members through
``isinstance(obj, Protocol)`` (all are ``runtime_checkable``), never by probing an attribute name
ad hoc. A user's own LightningModule or LightningDataModule takes part in a feature by having the
members of its protocol; nothing else is required of it. Plain typing: no torch, Lightning or
Hydra here, so every layer (data, models, callbacks, train) may import it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable


# -- data modules ------------------------------------------------------------------------------
@runtime_checkable
class HasDims(Protocol):
    """A data module whose ``dims`` tell the model what it needs to know of the data (``vocab_size``,
    ``num_classes``, ``in_channels``, ``image_size``, ``level``, ...). Each key reaches the model
    where the model's constructor names it (``seqgen.utils.build(..., offered=dims)``)."""

    @property
    def dims(self) -> Mapping[str, Any]: ...


@runtime_checkable
class HasCheckpointExtras(Protocol):
    """Plain data saved in every checkpoint beside the weights (tokenizer state, normalisation
    statistics, class names) so that ``scripts/generate.py`` and friends need no data files."""

    def checkpoint_extras(self) -> dict[str, Any]: ...


@runtime_checkable
class HasClasses(Protocol):
    """Class names, for confusion matrices and predictions."""

    classes: Sequence[str]


@runtime_checkable
class Tokenizer(Protocol):
    """One protocol for the char, word and sentencepiece tokenizers (``seqgen.data.tokenizers``).

    ``encode(text, bos=False, eos=False)`` gives ids, with ``<bos>``/``<eos>`` only when asked;
    ``decode(ids)`` gives text, special tokens dropped; ``specials`` maps ``pad``/``unk``/``bos``/
    ``eos`` to their ids; ``piece(id)`` is the token's own string; ``state()`` is plain data that
    ``Tokenizer.from_state`` turns back into the tokenizer."""

    @property
    def vocab_size(self) -> int: ...

    @property
    def specials(self) -> dict[str, int]: ...

    def encode(self, text: str, bos: bool = False, eos: bool = False) -> list[int]: ...

    def decode(self, ids: Sequence[int]) -> str: ...

    def piece(self, i: int) -> str: ...

    def state(self) -> dict[str, Any]: ...


@runtime_checkable
class HasTokenizer(Protocol):
    """A text data module (text samples, generation)."""

    tokenizer: Tokenizer


# -- models ------------------------------------------------------------------------------------
@runtime_checkable
class Transferable(Protocol):
    """A model that can start from another run's backbone: ``init_from`` names the source (a
    checkpoint, a run folder or ``last:<task>``), ``load_backbone_state`` loads the matching
    weights (the net's own ``head_names`` say which are the head and stay new) and returns the
    names it loaded."""

    init_from: str | None

    def load_backbone_state(self, state_dict: Mapping[str, Any], source: str) -> list[str]: ...


@runtime_checkable
class HasEvalClassifier(Protocol):
    """A generative model scored by a frozen classifier of another run (``eval_classifier``),
    which ``seqgen.train`` attaches as ``feature_classifier`` (never saved with the model)."""

    eval_classifier: str | None
    feature_classifier: list[Any]


@runtime_checkable
class HasUnusedParameters(Protocol):
    """A model some of whose parameters get no gradient in a step (a GAN's generator during the
    discriminator's step): DDP is then told to look for unused parameters."""

    ddp_unused_parameters: bool


@runtime_checkable
class HasVisuals(Protocol):
    """Pictures for ``ImageGrids``: name -> (images in [0, 1], images per row)."""

    def visuals(self, stage: str = "val") -> dict[str, tuple[Any, int]]: ...


@runtime_checkable
class HasLatentScatter(Protocol):
    """2-D latent codes and their labels for ``plots/latent.png`` (None when the code is not 2-D)."""

    def latent_scatter(self) -> tuple[Any, Any] | None: ...


@runtime_checkable
class HasConfusion(Protocol):
    """A classifier's test confusion matrix and some misclassified examples, for the plots."""

    test_confusion: Any
    test_mistakes: list[tuple[Any, int, int]]


@runtime_checkable
class Generates(Protocol):
    """A language model that continues a prompt (``TextSamples``, ``scripts/generate.py``)."""

    def generate(self, prompt_ids: Any, max_new_tokens: int, temperature: float = 1.0, **kwargs: Any) -> Any: ...


@runtime_checkable
class Translates(Protocol):
    """A translator's kept (source, hypothesis, reference) items for ``TranslationSamples``."""

    val_outputs: list[dict[str, Any]]
    test_outputs: list[dict[str, Any]]


@runtime_checkable
class HasNodeEmbedding(Protocol):
    """A node classifier's last hidden representation of every node after the test, with the labels
    and the training mask: ``(hidden (N, d), labels (N,), train_mask (N,))`` (``NodeEmbeddingPlot``)."""

    test_embedding: Any


@runtime_checkable
class ExecutesSteps(Protocol):
    """A model that can run K optimiser steps per Lightning ``training_step`` (the recipe's
    ``steps_per_execution``; :mod:`seqgen.models.execution`)."""

    steps_per_execution: int

    def use_steps_per_execution(self, k: int) -> None: ...
