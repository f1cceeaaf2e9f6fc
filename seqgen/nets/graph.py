"""Graph neural networks for node classification: GCN (Kipf & Welling 2017) and GAT (Velickovic
et al. 2018), on torch_geometric's message-passing layers (``GCNConv``, ``GATConv``).

torch_geometric is the field's maintained library and installs as a pure-Python wheel that works
with this torch (no compiled extension is needed for these layers): ``pip install seqgen[graph]``.
It is imported when a net is built, not when ``seqgen.nets`` is, since importing it costs about two
seconds. Each net takes ``x`` (N, F) and ``edge_index`` (2, E) and returns class scores (N, C);
``embed`` returns the last hidden layer (what the embedding plot shows).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import Tensor, nn

from seqgen.utils import check_positive, check_probability

ACTIVATIONS = {"relu": nn.ReLU, "elu": nn.ELU, "tanh": nn.Tanh}


def _pyg_nn() -> Any:
    try:
        import torch_geometric.nn as pyg_nn
    except ImportError as e:
        raise ImportError("graph nets need torch_geometric: pip install 'seqgen[graph]' (or torch_geometric)") from e
    return pyg_nn


class _NodeNet(nn.Module):
    """Layers ``self.convs`` with dropout before each and ``self.act`` between them."""

    convs: nn.ModuleList

    def __init__(self, dropout: float, activation: str):
        super().__init__()
        check_probability("dropout", dropout)
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; available: {', '.join(ACTIVATIONS)}")
        self.drop, self.act = nn.Dropout(dropout), ACTIVATIONS[activation]()

    def embed(self, x: Tensor, edge_index: Tensor) -> Tensor:
        """The node representations that the last layer classifies."""
        for conv in self.convs[:-1]:
            x = self.act(conv(self.drop(x), edge_index))
        return x

    def forward(self, x: Tensor, edge_index: Tensor) -> Tensor:
        return self.convs[-1](self.drop(self.embed(x, edge_index)), edge_index)


class GCN(_NodeNet):
    """Graph convolutional network: each layer is ``D^-1/2 (A + I) D^-1/2 X W`` (``GCNConv``).
    ``hidden_sizes=[16]``, dropout 0.5 and ReLU are the paper's Cora model. ``cached`` reuses the
    normalised adjacency across calls (transductive training on one fixed graph only)."""

    def __init__(self, num_features: int, num_classes: int, hidden_sizes: Sequence[int] = (16,), dropout: float = 0.5,
                 activation: str = "relu", cached: bool = False):
        super().__init__(dropout, activation)
        sizes = [num_features, *hidden_sizes, num_classes]
        for s in sizes:
            check_positive("a layer size", s)
        conv = _pyg_nn().GCNConv
        self.convs = nn.ModuleList(conv(a, b, cached=cached) for a, b in zip(sizes[:-1], sizes[1:]))
        self.head_names = (f"convs.{len(self.convs) - 1}",)


class GAT(_NodeNet):
    """Graph attention network: ``heads`` attention heads of ``hidden`` units each, concatenated,
    ELU, then ``out_heads`` heads averaged into the class scores; ``dropout`` on the inputs of each
    layer and on the attention coefficients. The defaults are the paper's Cora model (8 x 8 hidden,
    dropout 0.6)."""

    def __init__(self, num_features: int, num_classes: int, hidden: int = 8, heads: int = 8, out_heads: int = 1,
                 dropout: float = 0.6, activation: str = "elu"):
        super().__init__(dropout, activation)
        for name, v in (("hidden", hidden), ("heads", heads), ("out_heads", out_heads)):
            check_positive(name, v)
        conv = _pyg_nn().GATConv
        self.convs = nn.ModuleList([conv(num_features, hidden, heads=heads, dropout=dropout),
                                    conv(hidden * heads, num_classes, heads=out_heads, concat=False, dropout=dropout)])
        self.head_names = ("convs.1",)
