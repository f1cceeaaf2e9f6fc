"""Restricted Boltzmann machines and deep belief nets (Hinton 2002; Hinton, Osindero & Teh 2006).

An RBM with visible ``v`` (V units), hidden ``h`` (H binary units), weights ``W`` (H x V) and
biases ``b`` (visible), ``c`` (hidden) has the free energy

* Bernoulli visibles:  ``F(v) = -b.v - sum_j softplus(c_j + W_j.v)``
* Gaussian visibles (unit variance; standardise the data): ``F(v) = |v - b|^2 / 2 - sum_j softplus(c_j + W_j.v)``

and ``p(h_j=1|v) = sigmoid(c_j + W_j.v)``, ``p(v_i=1|h) = sigmoid(b_i + W_:i.h)`` (Bernoulli) or
``v|h ~ N(b + W^T h, 1)`` (Gaussian). Contrastive divergence CD-k takes the negative sample
``v_k`` from ``k`` Gibbs steps started at the data (or, for persistent CD, at the previous
update's chains); the gradient of the surrogate ``mean F(v_0) - mean F(v_k)`` (``v_k`` held
fixed) is exactly the CD update ``<v h>_data - <v h>_model`` with the sign flipped, so any torch
optimiser (momentum, weight decay) applies it.

:class:`DBN` keeps its layers in a classifier's layout -- ``features = [Flatten, Linear, Sigmoid,
Linear, Sigmoid, ...]`` with each Linear's weight/bias being an RBM's ``W``/``c`` -- so a
greedily pretrained stack initialises an :class:`~seqgen.nets.MLP` with sigmoid units by name.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from seqgen.errors import ConfigError

VISIBLE = ("bernoulli", "gaussian")


def free_energy(v: Tensor, weight: Tensor, vbias: Tensor, hbias: Tensor, visible: str = "bernoulli") -> Tensor:
    """F(v) per example, shape (N,)."""
    hidden_term = F.softplus(F.linear(v, weight, hbias)).sum(-1)
    if visible == "gaussian":
        return 0.5 * ((v - vbias) ** 2).sum(-1) - hidden_term
    return -(v @ vbias) - hidden_term


def hidden_probs(v: Tensor, weight: Tensor, hbias: Tensor) -> Tensor:
    return torch.sigmoid(F.linear(v, weight, hbias))


def visible_mean(h: Tensor, weight: Tensor, vbias: Tensor, visible: str = "bernoulli") -> Tensor:
    a = h @ weight + vbias
    return a if visible == "gaussian" else torch.sigmoid(a)


def sample_visible(mean: Tensor, visible: str = "bernoulli") -> Tensor:
    return mean + torch.randn_like(mean) if visible == "gaussian" else torch.bernoulli(mean)


def gibbs_chain(v: Tensor, weight: Tensor, vbias: Tensor, hbias: Tensor, k: int, visible: str = "bernoulli",
                ) -> tuple[Tensor, Tensor]:
    """``k`` steps v -> h ~ p(h|v) -> v ~ p(v|h); returns (last visible sample, its mean).
    Hidden states are sampled (binary) at every step, as in Hinton's practical guide."""
    mean = v
    for _ in range(k):
        h = torch.bernoulli(hidden_probs(v, weight, hbias))
        mean = visible_mean(h, weight, vbias, visible)
        v = sample_visible(mean, visible)
    return v, mean


def pseudo_log_likelihood(v: Tensor, weight: Tensor, vbias: Tensor, hbias: Tensor,
                          generator: torch.Generator | None = None) -> Tensor:
    """Stochastic pseudo-log-likelihood of binary ``v`` per example (scikit-learn's estimate):
    ``V * log sigmoid(F(v~) - F(v))`` with one random coordinate of each example flipped in ``v~``."""
    v = (v > 0.5).to(weight.dtype)
    n, d = v.shape
    idx = torch.randint(0, d, (n,), generator=generator).to(v.device)
    flipped = v.clone()
    rows = torch.arange(n, device=v.device)
    flipped[rows, idx] = 1.0 - flipped[rows, idx]
    fe, fe_flip = free_energy(v, weight, vbias, hbias), free_energy(flipped, weight, vbias, hbias)
    return d * F.logsigmoid(fe_flip - fe)


class RBM(nn.Module):
    """One RBM: ``weight`` (H x V), ``visible_bias`` (V), ``hidden_bias`` (H)."""

    def __init__(self, n_visible: int, n_hidden: int, visible: str = "bernoulli", init_std: float = 0.01):
        super().__init__()
        if visible not in VISIBLE:
            raise ConfigError(f"unknown visible unit type {visible!r}; available: {', '.join(VISIBLE)}")
        for name, n in (("n_visible", n_visible), ("n_hidden", n_hidden)):
            if not isinstance(n, int) or n <= 0:
                raise ConfigError(f"{name} must be a positive integer, got {n!r}")
        self.visible = visible
        self.weight = nn.Parameter(torch.randn(n_hidden, n_visible) * init_std)
        self.visible_bias = nn.Parameter(torch.zeros(n_visible))
        self.hidden_bias = nn.Parameter(torch.zeros(n_hidden))

    def params(self) -> tuple[Tensor, Tensor, Tensor]:
        return self.weight, self.visible_bias, self.hidden_bias

    def free_energy(self, v: Tensor) -> Tensor:
        return free_energy(v, self.weight, self.visible_bias, self.hidden_bias, self.visible)

    def hidden_probs(self, v: Tensor) -> Tensor:
        return hidden_probs(v, self.weight, self.hidden_bias)

    def gibbs(self, v: Tensor, k: int = 1) -> tuple[Tensor, Tensor]:
        return gibbs_chain(v, self.weight, self.visible_bias, self.hidden_bias, k, self.visible)

    def reconstruct(self, v: Tensor) -> Tensor:
        """Mean-field one-step reconstruction E[v | h = p(h|v)]."""
        return visible_mean(self.hidden_probs(v), self.weight, self.visible_bias, self.visible)

    def forward(self, v: Tensor) -> Tensor:
        return self.hidden_probs(v)


class DBN(nn.Module):
    """A stack of RBMs ``input_size -> hidden_sizes[0] -> ...`` in an MLP's layout (see module doc).
    Layer 0 has ``visible`` units of the given type; higher layers are Bernoulli."""

    def __init__(self, input_size: int, hidden_sizes: Sequence[int] = (256,), visible: str = "bernoulli",
                 init_std: float = 0.01):
        super().__init__()
        if visible not in VISIBLE:
            raise ConfigError(f"unknown visible unit type {visible!r}; available: {', '.join(VISIBLE)}")
        hidden_sizes = list(hidden_sizes)
        if not hidden_sizes or any(not isinstance(h, int) or h <= 0 for h in hidden_sizes):
            raise ConfigError(f"hidden_sizes must be a non-empty list of positive integers, got {hidden_sizes!r}")
        self.visible, self.sizes = visible, [input_size, *hidden_sizes]
        layers: list[nn.Module] = [nn.Flatten()]
        for v, h in zip(self.sizes, self.sizes[1:], strict=False):
            lin = nn.Linear(v, h)
            with torch.no_grad():
                lin.weight.normal_(0.0, init_std)
                lin.bias.zero_()
            layers += [lin, nn.Sigmoid()]
        self.features = nn.Sequential(*layers)
        self.visible_biases = nn.ParameterList([nn.Parameter(torch.zeros(v)) for v in self.sizes[:-1]])

    @property
    def num_layers(self) -> int:
        return len(self.sizes) - 1

    def layer(self, i: int) -> tuple[Tensor, Tensor, Tensor]:
        """(W, b, c) of RBM ``i``."""
        lin = self.features[1 + 2 * i]
        return lin.weight, self.visible_biases[i], lin.bias

    def layer_visible(self, i: int) -> str:
        return self.visible if i == 0 else "bernoulli"

    def up(self, x: Tensor, layers: int) -> Tensor:
        """Mean-field activations of the first ``layers`` hidden layers (the input to RBM ``layers``)."""
        v = x.flatten(1)
        for i in range(layers):
            w, _, c = self.layer(i)
            v = hidden_probs(v, w, c)
        return v

    def down(self, h: Tensor, from_layer: int) -> Tensor:
        """Mean-field top-down pass from hidden layer ``from_layer``'s visible units to the input."""
        v = h
        for i in reversed(range(from_layer)):
            w, b, _ = self.layer(i)
            v = visible_mean(v, w, b, self.layer_visible(i))
        return v

    def sample(self, n: int, steps: int = 1000, start: Tensor | None = None) -> Tensor:
        """Generate: ``steps`` Gibbs steps in the top RBM (from ``start`` propagated up, or random
        binary units), then a mean-field pass down to the input. Returns (n, input_size) means."""
        top = self.num_layers - 1
        w, b, c = self.layer(top)
        v = self.up(start, top) if start is not None else torch.bernoulli(torch.full((n, w.size(1)), 0.5, device=w.device))
        _, mean = gibbs_chain(v, w, b, c, steps, self.layer_visible(top))
        return self.down(mean, top)

    def forward(self, x: Tensor) -> Tensor:
        return self.features(x)
