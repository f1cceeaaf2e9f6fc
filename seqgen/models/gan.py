"""Generative adversarial nets with Lightning's manual optimisation.

``loss``:

* ``nonsaturating`` (Goodfellow et al. 2014): D minimises the binary cross-entropy of real vs
  fake; G maximises ``log D(G(z))`` (the non-saturating form). One D step and one G step per
  batch.
* ``wgan_gp`` (Gulrajani et al. 2017): critic loss ``E[D(fake)] - E[D(real)] + lambda *
  E[(|grad D(x_hat)| - 1)^2]`` on random interpolates ``x_hat``; the critic takes ``n_critic``
  steps per generator step (one critic step per batch, a generator step every ``n_critic``
  batches). Use a critic without batch norm.

Conditional GANs (Mirza & Osindero 2014): ``conditional: true`` gives both nets the labels.
Images are scaled from the data's [0, 1] to the generator's [-1, 1] here.

Quality without downloads: every validation epoch ``eval_samples`` generated images are compared
with the validation images by the **Fréchet distance** of their pixel statistics
(``val/fd_pixels``) and, when an ``eval_classifier`` (a seqgen classifier trained on the same
dataset) has been attached, by the Fréchet distance of its penultimate features (``val/fd``)
and its classifier score ``exp E_x KL(p(y|x) || p(y))`` (``val/classifier_score``). These follow
FID and the Inception score but are *not* them: the numbers are comparable only between runs
that use the same classifier.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from seqgen.errors import ConfigError
from seqgen.models.base import SeqgenModule, build_net
from seqgen.models.execution import manual_update
from seqgen.models.gen_metrics import FeatureStats, classifier_score, frechet_distance
from seqgen.models.optim import build_optimizer, param_groups
from seqgen.utils import to_plain

GAN_LOSSES = ("nonsaturating", "wgan_gp")


class GAN(SeqgenModule):
    def __init__(self, generator: dict[str, Any] | torch.nn.Module, discriminator: dict[str, Any] | torch.nn.Module,
                 latent_dim: int = 100, loss: str = "nonsaturating", conditional: bool = False, n_critic: int = 1,
                 gp_weight: float = 10.0, label_smoothing: float = 0.0, eval_samples: int = 1000,
                 eval_classifier: str | None = None, num_samples: int = 64, d_lr_mult: float = 1.0,
                 optimizer: dict[str, Any] | None = None, scheduler: dict[str, Any] | None = None,
                 skip_nonfinite: bool = False, compile: bool = False, num_classes: int = 10, in_channels: int = 1,
                 image_size: int | list[int] = 28):
        super().__init__(optimizer or {"name": "adam", "lr": 2e-4, "betas": [0.5, 0.999]}, scheduler, skip_nonfinite,
                         compile)
        if loss not in GAN_LOSSES:
            raise ConfigError(f"unknown GAN loss {loss!r}; available: {', '.join(GAN_LOSSES)}")
        if not isinstance(latent_dim, int) or latent_dim <= 0:
            raise ConfigError(f"latent_dim must be a positive integer, got {latent_dim!r}")
        if not isinstance(n_critic, int) or n_critic < 1:
            raise ConfigError(f"n_critic must be a positive integer, got {n_critic!r}")
        if (self.scheduler_cfg.get("name") or "none") != "none":
            raise ConfigError("GAN: learning-rate schedulers are not supported (scheduler.name must be none)")
        self.save_hyperparameters(ignore=[n for n, v in (("generator", generator), ("discriminator", discriminator))
                                          if not isinstance(v, dict)])
        k = num_classes if conditional else 0
        self.generator = build_net({**to_plain(generator), "num_classes": k} if isinstance(generator, dict) else generator,
                                   "model.generator", latent_dim=latent_dim, out_channels=in_channels,
                                   image_size=image_size)
        self.discriminator = build_net({**to_plain(discriminator), "num_classes": k}
                                       if isinstance(discriminator, dict) else discriminator, "model.discriminator",
                                       in_channels=in_channels, image_size=image_size)
        self.automatic_optimization = False
        self.ddp_unused_parameters = True  # the D step leaves G without gradients (seqgen.train tells DDP)
        self.latent_dim, self.loss_name, self.conditional, self.num_classes = latent_dim, loss, conditional, num_classes
        self.n_critic, self.gp_weight, self.label_smoothing = n_critic, gp_weight, label_smoothing
        self.eval_samples, self.eval_classifier, self.d_lr_mult = eval_samples, eval_classifier, d_lr_mult
        gen = torch.Generator().manual_seed(0)
        self.register_buffer("fixed_z", torch.randn(num_samples, latent_dim, generator=gen), persistent=False)
        self.register_buffer("fixed_y", torch.arange(num_samples) % num_classes, persistent=False)
        self.feature_classifier: list[torch.nn.Module] = []  # attached by seqgen.train (not a submodule: never saved)
        self._real_pix = self._real_feat = None

    # -- generation ------------------------------------------------------------------------------
    def forward(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        """Images in [0, 1] from noise ``z`` (and labels ``y`` when conditional)."""
        return (self.generator(z, y if self.conditional else None) + 1) / 2

    @torch.no_grad()
    def sample(self, n: int, y: Tensor | None = None) -> Tensor:
        z = torch.randn(n, self.latent_dim, device=self.device)
        if self.conditional and y is None:
            y = torch.randint(0, self.num_classes, (n,), device=self.device)
        return self(z, y).clamp(0, 1)

    def configure_optimizers(self) -> Any:
        cfg = {k: v for k, v in self.optimizer_cfg.items() if v is not None}
        name, lr, wd = cfg.pop("name", "adam"), cfg.pop("lr", 2e-4), cfg.pop("weight_decay", 0.0)
        cfg.pop("decay_norm_and_bias", None)
        opt_g = build_optimizer(param_groups(self.generator, wd), name, lr, **cfg)
        opt_d = build_optimizer(param_groups(self.discriminator, wd), name, lr * self.d_lr_mult, **cfg)
        return [opt_g, opt_d]

    # -- losses ----------------------------------------------------------------------------------
    def _d(self, x: Tensor, y: Tensor | None) -> Tensor:
        return self.discriminator(x, y if self.conditional else None).float()

    def gradient_penalty(self, real: Tensor, fake: Tensor, y: Tensor | None) -> Tensor:
        alpha = torch.rand(real.size(0), *([1] * (real.dim() - 1)), device=real.device, dtype=real.dtype)
        x_hat = (alpha * real + (1 - alpha) * fake).requires_grad_(True)
        (grad,) = torch.autograd.grad(self._d(x_hat, y).sum(), x_hat, create_graph=True)
        return ((grad.flatten(1).norm(2, dim=1) - 1) ** 2).mean()

    def discriminator_loss(self, real: Tensor, fake: Tensor, y: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
        """(loss, D accuracy on real, D accuracy on fake)."""
        d_real, d_fake = self._d(real, y), self._d(fake, y)
        if self.loss_name == "wgan_gp":
            loss = d_fake.mean() - d_real.mean() + self.gp_weight * self.gradient_penalty(real, fake, y)
        else:
            target = torch.full_like(d_real, 1.0 - self.label_smoothing)
            loss = (F.binary_cross_entropy_with_logits(d_real, target)
                    + F.binary_cross_entropy_with_logits(d_fake, torch.zeros_like(d_fake)))
        return loss, (d_real > 0).float().mean(), (d_fake < 0).float().mean()

    def generator_loss(self, fake: Tensor, y: Tensor | None) -> Tensor:
        d_fake = self._d(fake, y)
        if self.loss_name == "wgan_gp":
            return -d_fake.mean()
        return F.binary_cross_entropy_with_logits(d_fake, torch.ones_like(d_fake))

    def _optimizer_step(self, optimizer: Any, loss: Tensor) -> bool:
        """Backward and step when the loss is finite; otherwise skip (skip_nonfinite: False is
        returned) or raise with the step number."""
        if self.finite_or_skip(loss) is None:
            return False
        if self.steps_per_execution > 1:  # the same update without Lightning's per-call hook dispatch
            manual_update(self, optimizer, loss)
            return True
        optimizer.zero_grad(set_to_none=True)
        self.manual_backward(loss)
        optimizer.step()
        return True

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor | None:
        opt_g, opt_d = self.optimizers()
        x, y = batch
        real = x * 2 - 1
        labels = y if self.conditional else None
        n = real.size(0)
        z = torch.randn(n, self.latent_dim, device=self.device)
        # discriminator / critic step
        fake = self.generator(z, labels).detach()
        d_loss, acc_real, acc_fake = self.discriminator_loss(real, fake, labels)
        if not self._optimizer_step(opt_d, d_loss):
            return None
        self.log_dict({"train/d_loss": d_loss.detach(), "train/d_acc_real": acc_real, "train/d_acc_fake": acc_fake},
                      on_step=True, on_epoch=True, prog_bar=False, batch_size=n)
        # generator step (every n_critic batches)
        if (batch_idx + 1) % self.n_critic == 0:
            z = torch.randn(n, self.latent_dim, device=self.device)
            g_loss = self.generator_loss(self.generator(z, labels), labels)
            if not self._optimizer_step(opt_g, g_loss):
                return None
            self.log("train/g_loss", g_loss.detach(), on_step=True, on_epoch=True, prog_bar=False, batch_size=n)
        return d_loss.detach()

    # -- evaluation ------------------------------------------------------------------------------
    def _features(self, images: Tensor) -> tuple[Tensor, Tensor] | None:
        """(penultimate features, logits) of the attached classifier for images in [0, 1]."""
        if not self.feature_classifier:
            return None
        clf = self.feature_classifier[0].to(self.device).eval()
        return clf.features_and_logits(images)

    def _start_eval(self) -> None:
        self._real_pix, self._real_feat = FeatureStats(), FeatureStats()

    on_validation_epoch_start = on_test_epoch_start = _start_eval

    def _eval_step(self, stage: str, batch: tuple[Tensor, Tensor]) -> None:
        """Collect the real images' statistics; log D's view of them vs fresh fakes (a cheap health signal)."""
        x, y = batch
        self._real_pix.update(x.flatten(1))
        feats = self._features(x) if stage == "val" else None
        if feats is not None:
            self._real_feat.update(feats[0])
        labels = y if self.conditional else None
        fake = self.generator(torch.randn(x.size(0), self.latent_dim, device=self.device), labels)
        d_real, d_fake = self._d(x * 2 - 1, labels), self._d(fake, labels)
        if stage == "val" and self.loss_name == "wgan_gp":  # the critic's estimate of the Wasserstein distance
            self.log("val/w_distance", d_real.mean() - d_fake.mean(), on_epoch=True, batch_size=x.size(0), sync_dist=True)
        self.log_dict({f"{stage}/d_acc_real": (d_real > 0).float().mean(),
                       f"{stage}/d_acc_fake": (d_fake < 0).float().mean()},
                      on_epoch=True, batch_size=x.size(0), sync_dist=True)

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._eval_step("val", batch)

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._eval_step("test", batch)

    @torch.no_grad()
    def _generated_stats(self, n: int, features: bool) -> tuple[FeatureStats, FeatureStats | None, Tensor | None]:
        gen = torch.Generator(device=self.device).manual_seed(4321)  # the same noise every epoch
        pix, feat, logits = FeatureStats(), FeatureStats() if features and self.feature_classifier else None, []
        for start in range(0, n, 500):
            m = min(500, n - start)
            z = torch.randn(m, self.latent_dim, device=self.device, generator=gen)
            y = torch.randint(0, self.num_classes, (m,), device=self.device, generator=gen) if self.conditional else None
            images = self(z, y).clamp(0, 1)
            pix.update(images.flatten(1))
            f = self._features(images) if feat is not None else None
            if f is not None:
                feat.update(f[0])
                logits.append(f[1])
        return pix, feat, torch.cat(logits) if logits else None

    def _log_quality(self, stage: str) -> None:
        """Fréchet distances (and classifier score, validation only) of ``eval_samples`` fakes vs the real split.
        Lightning runs this in eval mode, so batch norm uses its running statistics."""
        if self._real_pix is None or self._real_pix.n < 2:
            return
        pix, feat, logits = self._generated_stats(self.eval_samples, features=stage == "val")
        self.log(f"{stage}/fd_pixels", frechet_distance(*self._real_pix.mean_cov(), *pix.mean_cov()),
                 prog_bar=stage == "val", sync_dist=True)
        if stage == "val" and feat is not None and self._real_feat.n >= 2:
            self.log("val/fd", frechet_distance(*self._real_feat.mean_cov(), *feat.mean_cov()), sync_dist=True)
            self.log("val/classifier_score", classifier_score(logits), sync_dist=True)

    def on_validation_epoch_end(self) -> None:
        self._log_quality("val")

    def on_test_epoch_end(self) -> None:
        self._log_quality("test")

    # -- pictures --------------------------------------------------------------------------------
    @torch.no_grad()
    def visuals(self, stage: str = "val") -> dict[str, tuple[Tensor, int]]:
        """``samples`` from fixed noise (for a conditional GAN: one row per class, in order)."""
        was_training = self.generator.training
        self.generator.eval()
        z, y = self.fixed_z.to(self.device), self.fixed_y.to(self.device)
        if self.conditional:  # row r = class r
            per_row = max(1, len(z) // self.num_classes)
            y = torch.arange(self.num_classes, device=self.device).repeat_interleave(per_row)
            z = z[: len(y)] if len(z) >= len(y) else torch.randn(len(y), self.latent_dim, device=self.device)
            images, nrow = self(z, y), per_row
        else:
            images, nrow = self(z), 8
        self.generator.train(was_training)
        return {"samples": (images.clamp(0, 1).float().cpu(), nrow)}
