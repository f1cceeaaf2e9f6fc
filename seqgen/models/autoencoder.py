"""Autoencoders (plain, denoising, sparse) and variational autoencoders.

Both take an :class:`~seqgen.nets.autoencoders.AutoEncoderNet` spec (dense or conv) and images
in [0, 1] (data ``normalize: false``). ``likelihood``: ``bernoulli`` (the decoder outputs logits;
cross-entropy per pixel, the usual choice for MNIST-like data) or ``gaussian`` (the decoder
outputs means; squared error).

Logged per example in nats (VAE) or per pixel (autoencoder ``mse``), for train/val/test. Both
expose ``visuals(stage)`` -- named image batches in [0, 1] for :class:`seqgen.callbacks.ImageGrids`.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from seqgen.errors import ConfigError
from seqgen.models.base import SeqgenModule, build_net
from seqgen.nets.autoencoders import add_noise
from seqgen.utils import to_plain

LIKELIHOODS = ("bernoulli", "gaussian")
SPARSITY = (None, "none", "l1", "kl")


def _check_likelihood(likelihood: str) -> None:
    if likelihood not in LIKELIHOODS:
        raise ConfigError(f"unknown likelihood {likelihood!r}; available: {', '.join(LIKELIHOODS)}")


class _ImageModel(SeqgenModule):
    """Keeps the first validation batch (a fixed set of examples) for the image grids."""

    num_show = 8

    def _keep_examples(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        if batch_idx == 0 and getattr(self, "_examples", None) is None:
            x, y = batch
            self._examples = (x[:64].detach().clone(), y[:64].detach().clone())

    def _unit(self, out: Tensor) -> Tensor:
        """Decoder output -> image in [0, 1]."""
        return torch.sigmoid(out) if self.likelihood == "bernoulli" else out.clamp(0, 1)

    def reconstruction_nll(self, out: Tensor, x: Tensor) -> Tensor:
        """-log p(x | decoder output) per example (Gaussian: unit variance, so 0.5 * squared error + const)."""
        if self.likelihood == "bernoulli":
            return F.binary_cross_entropy_with_logits(out.float(), x.float(), reduction="none").flatten(1).sum(-1)
        d = x[0].numel()
        return 0.5 * ((out.float() - x.float()) ** 2).flatten(1).sum(-1) + 0.5 * d * math.log(2 * math.pi)


class AutoEncoder(_ImageModel):
    """``x -> (noise) -> encoder -> code -> decoder -> x_hat``, trained to reconstruct the clean ``x``.

    * ``noise``: ``gaussian`` (std ``noise_level``) or ``masking`` (drop each pixel with probability
      ``noise_level``) -- a denoising autoencoder (Vincent et al. 2008). Validation/test corrupt
      their inputs the same way (with a fixed seed), so ``val/mse`` is the error on *noisy* inputs,
      beside ``val/noisy_mse``, the error of the noisy input itself.
    * ``sparsity``: ``l1`` (``sparsity_weight * mean |code|``) or ``kl`` (``sparsity_weight *
      sum_j KL(rho || rho_hat_j)`` over the batch-mean sigmoid activations of the code, target ``rho``).

    Logged: ``loss`` (the objective per example), ``mse`` (per pixel, output vs clean input).
    """

    def __init__(self, net: dict[str, Any] | torch.nn.Module, likelihood: str = "bernoulli", noise: str | None = None,
                 noise_level: float = 0.0, sparsity: str | None = None, sparsity_weight: float = 1e-3,
                 sparsity_target: float = 0.05, optimizer: dict[str, Any] | None = None,
                 scheduler: dict[str, Any] | None = None, skip_nonfinite: bool = False, compile: bool = False,
                 in_channels: int | None = None, image_size: int | list[int] | None = None):
        super().__init__(optimizer, scheduler, skip_nonfinite, compile)
        _check_likelihood(likelihood)
        if sparsity not in SPARSITY:
            raise ConfigError(f"unknown sparsity {sparsity!r}; available: l1, kl, none")
        if noise not in (None, "none", "gaussian", "masking"):
            raise ConfigError(f"unknown noise {noise!r}; available: gaussian, masking, none")
        if noise == "masking" and not 0.0 <= noise_level < 1.0:
            raise ConfigError(f"masking noise_level is a drop probability in [0, 1), got {noise_level}")
        if not 0.0 < sparsity_target < 1.0:
            raise ConfigError(f"sparsity_target must be in (0, 1), got {sparsity_target}")
        self.save_hparams_with_net(net)
        self.net = build_net(net, in_channels=in_channels, image_size=image_size)
        self.likelihood, self.noise, self.noise_level = likelihood, noise, noise_level
        self.sparsity, self.sparsity_weight, self.sparsity_target = sparsity, sparsity_weight, sparsity_target
        self._examples: tuple[Tensor, Tensor] | None = None

    def forward(self, x: Tensor) -> Tensor:
        """The reconstruction of ``x`` as an image in [0, 1]."""
        return self._unit(self.net(x))

    def corrupt(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        return add_noise(x, self.noise, self.noise_level, generator)

    def sparsity_penalty(self, code: Tensor) -> Tensor:
        if self.sparsity == "l1":
            return self.sparsity_weight * code.abs().mean(0).sum()
        if self.sparsity == "kl":
            rho, rho_hat = self.sparsity_target, torch.sigmoid(code).mean(0).clamp(1e-6, 1 - 1e-6)
            kl = rho * torch.log(rho / rho_hat) + (1 - rho) * torch.log((1 - rho) / (1 - rho_hat))
            return self.sparsity_weight * kl.sum()
        return code.new_zeros(())

    def _step(self, stage: str, x: Tensor, generator: torch.Generator | None) -> tuple[Tensor, Tensor]:
        noisy = self.corrupt(x, generator)
        code = self.net.encode(noisy)
        out = self.net.decode(code)
        if self.likelihood == "bernoulli":
            rec = F.binary_cross_entropy_with_logits(out.float(), x.float(), reduction="none").flatten(1).sum(-1).mean()
        else:
            rec = ((out.float() - x.float()) ** 2).flatten(1).sum(-1).mean()
        loss = rec + self.sparsity_penalty(code.float())
        n = x.size(0)
        mse = F.mse_loss(self._unit(out.detach()).float(), x.float())
        self.log(f"{stage}/loss", loss, prog_bar=stage != "train", on_step=stage == "train", on_epoch=True, batch_size=n,
                 sync_dist=stage != "train")
        self.log(f"{stage}/mse", mse, on_step=False, on_epoch=True, batch_size=n, sync_dist=stage != "train")
        if self.noise not in (None, "none") and stage != "train":
            self.log(f"{stage}/noisy_mse", F.mse_loss(noisy.float(), x.float()), on_epoch=True, batch_size=n,
                     sync_dist=True)
        return loss, out

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor | None:
        loss, _ = self._step("train", batch[0], None)
        return self.finite_or_skip(loss)

    def _eval_generator(self, batch_idx: int) -> torch.Generator:
        return torch.Generator(device=self.device).manual_seed(1000 + batch_idx)  # the same noise every evaluation

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._keep_examples(batch, batch_idx)
        self._step("val", batch[0], self._eval_generator(batch_idx))

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._step("test", batch[0], self._eval_generator(batch_idx))

    @torch.no_grad()
    def visuals(self, stage: str = "val") -> dict[str, tuple[Tensor, int]]:
        """``reconstructions``: rows of inputs | noisy inputs (denoising only) | outputs."""
        if self._examples is None:
            return {}
        x = self._examples[0][: self.num_show].to(self.device)
        noisy = self.corrupt(x, torch.Generator(device=self.device).manual_seed(1000))
        rows = [x] + ([noisy.clamp(0, 1)] if self.noise not in (None, "none") else []) + [self._unit(self.net(noisy))]
        return {"reconstructions": (torch.cat(rows).float().cpu(), len(x))}


class VAE(_ImageModel):
    """Variational autoencoder (Kingma & Welling 2014), β-VAE (Higgins et al. 2017).

    The encoder outputs ``2 * latent_dim`` numbers: the mean and log-variance of a diagonal
    Gaussian ``q(z|x)``; ``z = mu + sigma * eps`` (reparameterisation); prior ``N(0, I)``.
    ``ELBO = E_q[log p(x|z)] - KL(q(z|x) || p(z))`` in nats per example, the KL in closed form.
    The training loss is ``-(E_q[log p(x|z)] - beta_t * KL)`` with ``beta_t`` rising linearly from
    0 to ``beta`` over ``kl_warmup_steps`` (KL warm-up, Bowman et al. 2016).

    At test, ``test/nll_iwae``: the importance-weighted estimate of ``-log p(x)`` with
    ``iwae_k`` samples (Burda et al. 2016), an upper bound on the NLL tighter than ``-ELBO``.
    """

    def __init__(self, net: dict[str, Any] | torch.nn.Module, likelihood: str = "bernoulli", beta: float = 1.0,
                 kl_warmup_steps: int = 0, iwae_k: int = 100, num_samples: int = 64,
                 optimizer: dict[str, Any] | None = None, scheduler: dict[str, Any] | None = None,
                 skip_nonfinite: bool = False, compile: bool = False, in_channels: int | None = None,
                 image_size: int | list[int] | None = None):
        super().__init__(optimizer, scheduler, skip_nonfinite, compile)
        _check_likelihood(likelihood)
        if not isinstance(beta, (int, float)) or beta < 0:
            raise ConfigError(f"beta must be a non-negative number, got {beta!r}")
        if not isinstance(iwae_k, int) or iwae_k < 0:
            raise ConfigError(f"iwae_k must be a non-negative integer (0 = no IWAE estimate), got {iwae_k!r}")
        if isinstance(net, dict):
            net = {**to_plain(net), "code_factor": 2}  # the encoder outputs mean and log-variance
        self.save_hparams_with_net(net)
        self.net = build_net(net, in_channels=in_channels, image_size=image_size)
        self.latent_dim = self.net.latent_dim
        self.likelihood, self.beta, self.kl_warmup_steps, self.iwae_k = likelihood, float(beta), kl_warmup_steps, iwae_k
        self.num_samples = num_samples
        gen = torch.Generator().manual_seed(0)
        self.register_buffer("fixed_z", torch.randn(num_samples, self.latent_dim, generator=gen), persistent=False)
        self._examples: tuple[Tensor, Tensor] | None = None
        self._codes: list[tuple[Tensor, Tensor]] = []

    # -- the model ---------------------------------------------------------------------------
    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        mu, logvar = self.net.encode(x).float().chunk(2, dim=-1)
        return mu, logvar.clamp(-30.0, 20.0)

    @staticmethod
    def kl_divergence(mu: Tensor, logvar: Tensor) -> Tensor:
        """KL(N(mu, diag(exp(logvar))) || N(0, I)) per example, closed form."""
        return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(-1)

    def elbo_terms(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(reconstruction NLL, KL, decoder output) per example, with one reparameterised sample."""
        mu, logvar = self.encode(x)
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()
        out = self.net.decode(z.to(x.dtype) if x.is_floating_point() else z)
        return self.reconstruction_nll(out, x), self.kl_divergence(mu, logvar), out

    def beta_now(self) -> float:
        if self.kl_warmup_steps and self.training:
            return self.beta * min(1.0, self.global_step / self.kl_warmup_steps)
        return self.beta

    def log_weights(self, x: Tensor, k: int) -> Tensor:
        """``log p(x, z_i) - log q(z_i | x)`` for ``k`` samples per example: shape (N, k)."""
        mu, logvar = self.encode(x)
        std = (0.5 * logvar).exp()
        out = []
        for _ in range(k):
            eps = torch.randn_like(mu)
            z = mu + eps * std
            log_q = (-0.5 * eps.pow(2) - 0.5 * logvar - 0.5 * math.log(2 * math.pi)).sum(-1)
            log_p_z = (-0.5 * z.pow(2) - 0.5 * math.log(2 * math.pi)).sum(-1)
            out.append(-self.reconstruction_nll(self.net.decode(z), x) + log_p_z - log_q)
        return torch.stack(out, -1)

    @staticmethod
    def iwae_bound(log_w: Tensor) -> Tensor:
        """``log (1/k) sum_i w_i`` per example (>= the mean of ``log w_i``, the ELBO of the same samples)."""
        return torch.logsumexp(log_w, -1) - math.log(log_w.size(-1))

    def forward(self, x: Tensor) -> Tensor:
        """Reconstruction of ``x`` (decoder at the posterior mean) as an image in [0, 1]."""
        return self._unit(self.net.decode(self.encode(x)[0]))

    @torch.no_grad()
    def sample(self, n: int | None = None, z: Tensor | None = None) -> Tensor:
        """Images in [0, 1] decoded from prior samples (the decoder's mean, not a noisy sample)."""
        if z is None:
            z = torch.randn(n or self.num_samples, self.latent_dim, device=self.device)
        return self._unit(self.net.decode(z))

    # -- steps -------------------------------------------------------------------------------
    def _step(self, stage: str, x: Tensor, beta: float | None = None) -> Tensor:
        rec, kl, _ = self.elbo_terms(x)
        loss = (rec + (self.beta_now() if beta is None else beta) * kl).mean()
        # the logged values from the batch means, off the autograd graph: four small kernels a step, none recorded
        rec_m, kl_m = rec.detach().mean(), kl.detach().mean()
        nll_m = rec_m + kl_m  # the negative ELBO (the loss at beta = 1)
        n, sync = x.size(0), stage != "train"
        self.log(f"{stage}/loss", loss if stage == "train" else nll_m, prog_bar=sync, on_step=stage == "train",
                 on_epoch=True, batch_size=n, sync_dist=sync)
        self.log(f"{stage}/elbo", -nll_m, on_step=False, on_epoch=True, batch_size=n, sync_dist=sync)
        self.log(f"{stage}/kl", kl_m, on_step=False, on_epoch=True, batch_size=n, sync_dist=sync)
        self.log(f"{stage}/rec_nll", rec_m, on_step=False, on_epoch=True, batch_size=n, sync_dist=sync)
        return loss

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor | None:
        beta = self.beta_now()  # once a step: the global step is a chain of five Lightning properties
        loss = self._step("train", batch[0], beta)
        self.log("train/beta", beta, on_step=True, on_epoch=False)
        return self.finite_or_skip(loss)

    def on_validation_epoch_start(self) -> None:
        self._codes = []

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._keep_examples(batch, batch_idx)
        self._step("val", batch[0])
        if self.latent_dim == 2 and sum(len(c[0]) for c in self._codes) < 5000:
            self._codes.append((self.encode(batch[0])[0].detach().cpu(), batch[1].detach().cpu()))

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        x = batch[0]
        self._step("test", x)
        if self.iwae_k:
            nll = -self.iwae_bound(self.log_weights(x, self.iwae_k))
            self.log("test/nll_iwae", nll.mean(), on_step=False, on_epoch=True, batch_size=x.size(0), sync_dist=True)

    # -- pictures ----------------------------------------------------------------------------
    @torch.no_grad()
    def visuals(self, stage: str = "val") -> dict[str, tuple[Tensor, int]]:
        """``samples`` (fixed prior draws), ``reconstructions`` (inputs | outputs) and
        ``interpolations`` (rows: decoded from mu_a to mu_b between pairs of validation examples)."""
        out = {"samples": (self.sample(z=self.fixed_z.to(self.device)).float().cpu(), 8)}
        if self._examples is None:
            return out
        x = self._examples[0][: self.num_show].to(self.device)
        out["reconstructions"] = (torch.cat([x, self(x)]).float().cpu(), len(x))
        mu = self.encode(self._examples[0][:16].to(self.device))[0]
        if len(mu) >= 2:
            a, b = mu[0::2], mu[1::2]
            n = min(len(a), len(b))
            t = torch.linspace(0, 1, 10, device=mu.device)
            z = (a[:n, None] * (1 - t[None, :, None]) + b[:n, None] * t[None, :, None]).reshape(-1, self.latent_dim)
            out["interpolations"] = (self.sample(z=z).float().cpu(), 10)
        return out

    def latent_scatter(self) -> tuple[Tensor, Tensor] | None:
        """(posterior means, labels) of validation examples when ``latent_dim == 2``."""
        if self.latent_dim != 2 or not self._codes:
            return None
        return torch.cat([c[0] for c in self._codes]), torch.cat([c[1] for c in self._codes])
