"""Feed-forward networks: any depth, any activation (including maxout), chosen initialisation,
optional batch norm and dropout per layer.

Maxout (Goodfellow et al. 2013) is its own module: a linear map to ``out * pieces`` units and a
max over each group of ``pieces``; with two pieces, one fixed at zero, it is a ReLU.

``block``: ``plain`` layers, ``highway`` layers (Srivastava, Greff & Schmidhuber 2015: a transform
gate ``T`` decides per unit how much of ``H(x)`` to take and how much of ``x`` to carry, the
gate's bias starting negative so that a deep net starts close to the identity and "decides how many
layers it needs"), or ``residual`` layers (``x + H(x)``, the ungated descendant, He et al. 2016).
Highway and residual layers keep the width: the first hidden layer maps the input to it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from seqgen.errors import ConfigError

ACTIVATIONS = {
    "sigmoid": nn.Sigmoid,
    "tanh": nn.Tanh,
    "relu": nn.ReLU,
    "leaky_relu": nn.LeakyReLU,
    "elu": nn.ELU,
    "gelu": nn.GELU,
    "maxout": None,
}
INITS = ("default", "glorot", "he", "normal")


class Maxout(nn.Module):
    """``y_j = max_k (W_jk x + b_jk)`` over ``pieces`` linear pieces per output unit."""

    def __init__(self, in_features: int, out_features: int, pieces: int = 2):
        super().__init__()
        if not isinstance(pieces, int) or pieces < 2:
            raise ConfigError(f"maxout needs pieces >= 2, got {pieces!r}")
        self.out_features, self.pieces = out_features, pieces
        self.linear = nn.Linear(in_features, out_features * pieces)

    def forward(self, x: Tensor) -> Tensor:
        z = self.linear(x).view(*x.shape[:-1], self.out_features, self.pieces)
        return z.max(-1).values


class Highway(nn.Module):
    """``y = H(x) * T(x) + x * (1 - T(x))`` with ``H = activation(W_H x + b_H)`` and the transform
    gate ``T = sigmoid(W_T x + b_T)``; ``b_T`` starts at ``gate_bias`` (the paper: -1 to -3), so
    ``T`` is small and the layer carries its input at first."""

    def __init__(self, size: int, activation: str = "relu", gate_bias: float = -2.0):
        super().__init__()
        if activation not in ACTIVATIONS or activation == "maxout":
            raise ConfigError(f"highway activation must be one of {', '.join(a for a in ACTIVATIONS if a != 'maxout')}, "
                              f"got {activation!r}")
        self.transform, self.gate = nn.Linear(size, size), nn.Linear(size, size)
        self.act = ACTIVATIONS[activation]()
        with torch.no_grad():
            self.gate.bias.fill_(gate_bias)

    def forward(self, x: Tensor) -> Tensor:
        t = torch.sigmoid(self.gate(x))
        return self.act(self.transform(x)) * t + x * (1.0 - t)


class Residual(nn.Module):
    """``y = x + activation(W x + b)``: the identity path without a gate."""

    def __init__(self, size: int, activation: str = "relu"):
        super().__init__()
        if activation not in ACTIVATIONS or activation == "maxout":
            raise ConfigError(f"residual activation must be one of {', '.join(a for a in ACTIVATIONS if a != 'maxout')}, "
                              f"got {activation!r}")
        self.linear, self.act = nn.Linear(size, size), ACTIVATIONS[activation]()

    def forward(self, x: Tensor) -> Tensor:
        return x + self.act(self.linear(x))


BLOCKS = ("plain", "highway", "residual")


def init_linear(layer: nn.Linear, scheme: str, std: float = 0.01) -> None:
    """``glorot``: Var(W) = 2 / (fan_in + fan_out) (uniform); ``he``: Var(W) = 2 / fan_in (normal);
    ``normal``: N(0, std^2); biases zero. ``default`` keeps torch's init."""
    if scheme == "default":
        return
    fan_out, fan_in = layer.weight.shape
    with torch.no_grad():
        if scheme == "glorot":
            bound = math.sqrt(6.0 / (fan_in + fan_out))
            layer.weight.uniform_(-bound, bound)
        elif scheme == "he":
            layer.weight.normal_(0.0, math.sqrt(2.0 / fan_in))
        elif scheme == "normal":
            layer.weight.normal_(0.0, std)
        else:
            raise ConfigError(f"unknown init {scheme!r}; available: {', '.join(INITS)}")
        if layer.bias is not None:
            layer.bias.zero_()


class MLP(nn.Module):
    """``input_size -> hidden_sizes... -> num_classes`` (inputs are flattened).

    Each hidden layer: Linear (or Maxout) -> [BatchNorm] -> activation -> [Dropout(dropout)];
    ``input_dropout`` is applied to the input (Hinton et al. 2012 used 0.2 there, 0.5 inside).
    """

    def __init__(self, input_size: int, num_classes: int, hidden_sizes: Sequence[int] = (500, 500),
                 activation: str = "relu", pieces: int = 2, init: str = "default", init_std: float = 0.01,
                 batch_norm: bool = False, dropout: float = 0.0, input_dropout: float = 0.0, block: str = "plain",
                 gate_bias: float = -2.0):
        super().__init__()
        if block not in BLOCKS:
            raise ConfigError(f"unknown block {block!r}; available: {', '.join(BLOCKS)}")
        if activation not in ACTIVATIONS:
            raise ConfigError(f"unknown activation {activation!r}; available: {', '.join(ACTIVATIONS)}")
        if init not in INITS:
            raise ConfigError(f"unknown init {init!r}; available: {', '.join(INITS)}")
        hidden_sizes = list(hidden_sizes or [])
        if not hidden_sizes and activation != "relu":
            raise ConfigError(f"hidden_sizes is empty (a linear model) but activation={activation!r} was set; "
                              "give hidden layers or leave activation at its default")
        for i, h in enumerate(hidden_sizes):
            if not isinstance(h, int) or h <= 0:
                raise ConfigError(f"hidden_sizes[{i}] must be a positive integer, got {h!r}")
        for name, p in (("dropout", dropout), ("input_dropout", input_dropout)):
            if not 0.0 <= p < 1.0:
                raise ConfigError(f"{name} must be in [0, 1), got {p}")
        if block != "plain" and (len(set(hidden_sizes)) > 1 or activation == "maxout" or batch_norm):
            raise ConfigError(f"block={block} keeps one width without maxout or batch norm: hidden_sizes must all be "
                              f"equal, got {hidden_sizes}")
        if activation == "maxout" and (not isinstance(pieces, int) or pieces < 2):
            raise ConfigError(f"maxout needs pieces >= 2, got {pieces!r}")
        self.activation = activation
        layers: list[nn.Module] = [nn.Flatten()]
        if input_dropout:
            layers.append(nn.Dropout(input_dropout))
        width = input_size
        for i, h in enumerate(hidden_sizes):
            if block != "plain" and i > 0:  # width -> width: a highway or residual layer
                unit = Highway(h, activation, gate_bias) if block == "highway" else Residual(h, activation)
                for lin in (unit.transform,) if block == "highway" else (unit.linear,):
                    init_linear(lin, init, init_std)
                layers.append(unit)
            elif activation == "maxout":
                unit = Maxout(width, h, pieces)
                init_linear(unit.linear, init, init_std)
                layers.append(unit)
                if batch_norm:
                    layers.append(nn.BatchNorm1d(h))
            else:
                lin = nn.Linear(width, h)
                init_linear(lin, init, init_std)
                layers.append(lin)
                if batch_norm:
                    layers.append(nn.BatchNorm1d(h))
                layers.append(ACTIVATIONS[activation]())
            if dropout:
                layers.append(nn.Dropout(dropout))
            width = h
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(width, num_classes)
        self.head_names = ("head",)  # the layer transfer learning replaces
        init_linear(self.head, init, init_std)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))
