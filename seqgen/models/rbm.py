"""Contrastive-divergence training of an RBM, and greedy layer-wise pretraining of a DBN.

:class:`DBNPretraining` drives a :class:`seqgen.nets.DBN`: with one hidden layer it is one RBM;
with several, layer ``i`` is trained for ``epochs_per_layer`` epochs on the mean-field hidden
activations of the (frozen) layers below it, in order (Hinton, Osindero & Teh 2006). Each step
minimises the free-energy surrogate ``mean F(v_0) - mean F(v_k)`` whose gradient is the CD-k
update (see :mod:`seqgen.nets.rbm`), so SGD momentum and weight decay come from the optimiser.

``persistent: true`` is persistent CD (Tieleman 2008): the negative chains continue from the
previous update instead of restarting at the data (saved in checkpoints, so resume is exact).

Logged: ``train/free_energy_gap``; ``{val,test}/recon`` (per-pixel squared error of the
current layer's one-step mean-field reconstruction), ``{val,test}/recon_input`` (the input
passed up the trained layers and back down), ``{val,test}/pll`` (stochastic pseudo-log-likelihood
of the first RBM per example, Bernoulli inputs only). ``val/loss`` = ``val/recon_input``.

The pretrained stack initialises a sigmoid :class:`~seqgen.nets.MLP` classifier with the same
``hidden_sizes`` by name (``model.init_from`` of a Classifier task): the DBN fine-tuning recipe.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from seqgen.errors import ConfigError
from seqgen.models.base import SeqgenModule, build_net
from seqgen.nets.rbm import free_energy, gibbs_chain, hidden_probs, pseudo_log_likelihood, visible_mean
from seqgen.utils import image_hw


class DBNPretraining(SeqgenModule):
    def __init__(self, net: dict[str, Any] | torch.nn.Module, cd_k: int = 1, persistent: bool = False,
                 epochs_per_layer: int = 10, gibbs_steps: int = 1000, num_samples: int = 64,
                 optimizer: dict[str, Any] | None = None, scheduler: dict[str, Any] | None = None,
                 skip_nonfinite: bool = False, compile: bool = False, in_channels: int = 1,
                 image_size: list[int] | int = 8, input_size: int | None = None):
        super().__init__(optimizer or {"name": "sgd", "lr": 0.05, "momentum": 0.5}, scheduler, skip_nonfinite, compile)
        for name, v in (("cd_k", cd_k), ("epochs_per_layer", epochs_per_layer), ("gibbs_steps", gibbs_steps)):
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ConfigError(f"{name} must be a positive integer, got {v!r}")
        self.save_hparams_with_net(net)
        h, w = image_hw(image_size)
        self.net = build_net(net, input_size=input_size if input_size is not None else in_channels * h * w)
        self.cd_k, self.persistent, self.epochs_per_layer = cd_k, persistent, epochs_per_layer
        self.gibbs_steps, self.num_samples = gibbs_steps, num_samples
        self.image_shape = (in_channels, h, w)
        if self.net.sizes[0] != in_channels * h * w:
            raise ConfigError(f"DBN input_size {self.net.sizes[0]} != image size {in_channels}x{h}x{w} of the data")
        self.chains: dict[int, Tensor] = {}
        self._examples: Tensor | None = None

    @property
    def current_layer(self) -> int:
        return min(self.current_epoch // self.epochs_per_layer, self.net.num_layers - 1)

    def forward(self, x: Tensor) -> Tensor:
        """Mean-field activations of the top hidden layer."""
        return self.net(x)

    def negative_sample(self, v0: Tensor, layer: int) -> Tensor:
        """The CD-k (or PCD-k) negative visible vectors for a batch of layer-``layer`` inputs ``v0``."""
        w, b, c = self.net.layer(layer)
        vis = self.net.layer_visible(layer)
        with torch.no_grad():
            if not self.persistent:
                return gibbs_chain(v0, w, b, c, self.cd_k, vis)[1]  # mean of the last step: less noise (Hinton's guide)
            chain = self.chains.get(layer)
            if chain is None or chain.size(0) < v0.size(0) or chain.device != v0.device:
                chain = v0.detach().clone() if vis == "gaussian" else torch.bernoulli(v0.detach())
            sample, _ = gibbs_chain(chain[: v0.size(0)], w, b, c, self.cd_k, vis)
            self.chains[layer] = torch.cat([sample, chain[v0.size(0):]]) if chain.size(0) > v0.size(0) else sample
            return sample

    def cd_loss(self, v0: Tensor, negative: Tensor, layer: int) -> Tensor:
        w, b, c = self.net.layer(layer)
        vis = self.net.layer_visible(layer)
        return free_energy(v0, w, b, c, vis).mean() - free_energy(negative, w, b, c, vis).mean()

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor | None:
        layer = self.current_layer
        with torch.no_grad():
            v0 = self.net.up(batch[0].float(), layer)
        loss = self.cd_loss(v0, self.negative_sample(v0, layer), layer)
        self.log("train/free_energy_gap", loss, prog_bar=False, on_step=True, on_epoch=True, batch_size=v0.size(0))
        self.log("train/layer", float(layer), on_step=False, on_epoch=True)
        return self.finite_or_skip(loss)

    @torch.no_grad()
    def _eval(self, stage: str, x: Tensor) -> None:
        layer = self.current_layer
        w, b, c = self.net.layer(layer)
        v = self.net.up(x.float(), layer)
        h = hidden_probs(v, w, c)  # = self.net.up(x, layer + 1)
        rec = F.mse_loss(visible_mean(h, w, b, self.net.layer_visible(layer)), v)
        rec_input = F.mse_loss(self.net.down(h, layer + 1), x.float().flatten(1))
        n = x.size(0)
        kw = {"on_epoch": True, "batch_size": n, "sync_dist": True}
        self.log(f"{stage}/recon", rec, **kw)
        self.log(f"{stage}/recon_input", rec_input, prog_bar=True, **kw)
        self.log(f"{stage}/loss", rec_input, **kw)
        if self.net.visible == "bernoulli":
            gen = torch.Generator().manual_seed(7)
            self.log(f"{stage}/pll", pseudo_log_likelihood(x.flatten(1).float(), *self.net.layer(0), generator=gen).mean(),
                     **kw)

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        if batch_idx == 0 and self._examples is None:
            self._examples = batch[0][:8].detach().clone()
        self._eval("val", batch[0])

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._eval("test", batch[0])

    @torch.no_grad()
    def visuals(self, stage: str = "val") -> dict[str, tuple[Tensor, int]]:
        """``filters`` (first-layer weights of 64 hidden units, each scaled to [0, 1]),
        ``samples`` (``gibbs_steps`` Gibbs steps in the top RBM from random states, then down),
        ``reconstructions`` (inputs | up-and-down through the trained layers)."""
        w = self.net.layer(0)[0][:64].detach().float()
        lo, hi = w.min(1, keepdim=True).values, w.max(1, keepdim=True).values
        out = {"filters": (((w - lo) / (hi - lo).clamp_min(1e-8)).view(-1, *self.image_shape).cpu(), 8)}
        layers = self.current_layer + 1
        if layers == self.net.num_layers:
            with torch.random.fork_rng(devices=[]):  # the same chains every time; training's RNG untouched
                torch.manual_seed(0)
                samples = self.net.sample(self.num_samples, self.gibbs_steps)
            out["samples"] = (samples.clamp(0, 1).view(-1, *self.image_shape).float().cpu(), 8)
        if self._examples is not None:
            x = self._examples.to(self.device).float()
            rec = self.net.down(self.net.up(x, layers), layers).view_as(x)
            out["reconstructions"] = (torch.cat([x, rec]).clamp(0, 1).cpu(), len(x))
        return out

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["pcd_chains"] = {str(k): v.cpu() for k, v in self.chains.items()}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.chains = {int(k): v for k, v in checkpoint.get("pcd_chains", {}).items()}
