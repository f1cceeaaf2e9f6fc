"""Sample-quality measures for generative models that need no download.

* :func:`frechet_distance` between two Gaussians fitted to feature sets (Heusel et al. 2017's
  FID formula). With Inception-v3 pool features it is FID; here the features are pixels or a
  seqgen classifier's penultimate layer, so the values are comparable only with the same features.
* :func:`classifier_score`: ``exp(E_x KL(p(y|x) || p(y)))`` (the Inception-score formula of
  Salimans et al. 2016) with a seqgen classifier; between 1 and the number of classes.
"""

from __future__ import annotations

import torch
from torch import Tensor


class FeatureStats:
    """Running mean and covariance of feature vectors (float64 sums)."""

    def __init__(self) -> None:
        self.n = 0
        self.sum: Tensor | None = None
        self.outer: Tensor | None = None

    def update(self, feats: Tensor) -> None:
        f = feats.detach().double().flatten(1).cpu()
        if self.sum is None:
            self.sum = torch.zeros(f.size(1), dtype=torch.float64)
            self.outer = torch.zeros(f.size(1), f.size(1), dtype=torch.float64)
        self.n += f.size(0)
        self.sum += f.sum(0)
        self.outer += f.T @ f

    def mean_cov(self) -> tuple[Tensor, Tensor]:
        if self.n < 2:
            raise ValueError("need at least two feature vectors for a covariance")
        mean = self.sum / self.n
        cov = (self.outer - self.n * torch.outer(mean, mean)) / (self.n - 1)
        return mean, cov


def _sqrtm_psd(a: Tensor) -> Tensor:
    vals, vecs = torch.linalg.eigh((a + a.T) / 2)
    return (vecs * vals.clamp_min(0).sqrt()) @ vecs.T


def frechet_distance(mu1: Tensor, cov1: Tensor, mu2: Tensor, cov2: Tensor) -> float:
    """``|mu1 - mu2|^2 + tr(C1) + tr(C2) - 2 tr((C1^1/2 C2 C1^1/2)^1/2)`` (float64, symmetric
    square roots by eigen-decomposition, so it is stable for singular covariances)."""
    mu1, mu2, cov1, cov2 = (t.double() for t in (mu1, mu2, cov1, cov2))
    s1 = _sqrtm_psd(cov1)
    middle = s1 @ cov2 @ s1
    tr_sqrt = torch.linalg.eigvalsh((middle + middle.T) / 2).clamp_min(0).sqrt().sum()
    value = (mu1 - mu2).pow(2).sum() + torch.trace(cov1) + torch.trace(cov2) - 2 * tr_sqrt
    return float(value.clamp_min(0))


def classifier_score(logits: Tensor) -> float:
    """``exp(mean_x KL(p(y|x) || p(y)))`` with ``p(y)`` the mean of ``p(y|x)`` over the set."""
    logp = torch.log_softmax(logits.double(), -1)
    p = logp.exp()
    log_marginal = torch.log(p.mean(0).clamp_min(1e-12))
    kl = (p * (logp - log_marginal)).sum(-1).mean()
    return float(kl.exp())
