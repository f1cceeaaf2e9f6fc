"""Encoders and decoders for autoencoders and VAEs: dense (MLP) and convolutional.

* Dense: the encoder is an :class:`~seqgen.nets.MLP` (``features`` + ``head``) whose head outputs
  the code, the decoder an MLP from the code to the pixels.
* Convolutional: :class:`ConvNet` -- stride-2 4x4 convolutions (each halves the image) and a
  linear head -- and its mirror :class:`ConvDecoder` with transposed convolutions.

The encoders keep a classifier's parameter names (``features.*`` then ``head``), so a trained
autoencoder's encoder initialises a :class:`~seqgen.models.Classifier` over the same net
(``model.init_from``): the head, sized for the code, is left out and built for the classes.
Decoders return logits (Bernoulli) or means (Gaussian) of shape ``(N, C, H, W)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from seqgen.errors import ConfigError
from seqgen.nets.mlp import ACTIVATIONS, MLP
from seqgen.utils import image_hw

KINDS = ("dense", "conv")


def check_halvable(image_size: int | Sequence[int], times: int, what: str) -> tuple[int, int]:
    """The spatial size after ``times`` exact halvings; a clear error when the size cannot take them."""
    h, w = image_hw(image_size)
    f = 2 ** times
    if h % f or w % f or h < f or w < f:
        ok = ", ".join(str(f * k) for k in (2, 4, 7, 8, 16) if f * k <= 128)
        raise ConfigError(f"{what}: image size {h}x{w} cannot be halved {times} time(s) exactly by its {times} "
                          f"stride-2 layer(s); it takes sizes that are multiples of {f} (e.g. {ok}); "
                          "change the number of conv layers (channels) or the image size")
    return h // f, w // f


def _activation(name: str) -> nn.Module:
    if name not in ACTIVATIONS or ACTIVATIONS[name] is None:
        raise ConfigError(f"unknown activation {name!r}; available: {', '.join(k for k, v in ACTIVATIONS.items() if v)}")
    return ACTIVATIONS[name]()


class ConvNet(nn.Module):
    """``[Conv4x4/2 -> (BatchNorm) -> act] * len(channels) -> Flatten -> Linear(num_classes)``.

    A small convolutional classifier and the convolutional autoencoder's encoder (with
    ``num_classes`` = the code size). ``image_size`` must be divisible by ``2**len(channels)``.
    """

    def __init__(self, in_channels: int, image_size: int | Sequence[int], num_classes: int,
                 channels: Sequence[int] = (32, 64), activation: str = "relu", batch_norm: bool = False):
        super().__init__()
        channels = list(channels)
        if not channels:
            raise ConfigError("ConvNet needs at least one conv layer (channels)")
        h, w = check_halvable(image_size, len(channels), "ConvNet")
        layers: list[nn.Module] = []
        c_in = in_channels
        for c in channels:
            layers.append(nn.Conv2d(c_in, c, 4, stride=2, padding=1, bias=not batch_norm))
            if batch_norm:
                layers.append(nn.BatchNorm2d(c))
            layers.append(_activation(activation))
            c_in = c
        layers.append(nn.Flatten())
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(c_in * h * w, num_classes)
        self.head_names = ("head",)  # the layer transfer learning replaces

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))


class ConvDecoder(nn.Module):
    """``Linear -> (C0, h, w) -> [ConvTranspose4x4/2 -> act] ... -> ConvTranspose4x4/2 -> out_channels``;
    the mirror of :class:`ConvNet` with ``channels`` given from the code outwards."""

    def __init__(self, latent_dim: int, out_channels: int, image_size: int | Sequence[int],
                 channels: Sequence[int] = (64, 32), activation: str = "relu", batch_norm: bool = False):
        super().__init__()
        channels = list(channels)
        if not channels:
            raise ConfigError("ConvDecoder needs at least one transposed-conv layer (channels)")
        h, w = check_halvable(image_size, len(channels), "ConvDecoder")
        self.shape = (channels[0], h, w)
        self.fc = nn.Sequential(nn.Linear(latent_dim, channels[0] * h * w), _activation(activation))
        layers: list[nn.Module] = []
        for c_in, c_out in zip(channels, channels[1:], strict=False):
            layers.append(nn.ConvTranspose2d(c_in, c_out, 4, stride=2, padding=1, bias=not batch_norm))
            if batch_norm:
                layers.append(nn.BatchNorm2d(c_out))
            layers.append(_activation(activation))
        layers.append(nn.ConvTranspose2d(channels[-1], out_channels, 4, stride=2, padding=1))
        self.deconv = nn.Sequential(*layers)

    def forward(self, z: Tensor) -> Tensor:
        return self.deconv(self.fc(z).view(z.size(0), *self.shape))


class DenseDecoder(nn.Module):
    """An MLP from the code to ``C*H*W`` outputs, reshaped to the image."""

    def __init__(self, latent_dim: int, out_channels: int, image_size: int | Sequence[int],
                 hidden_sizes: Sequence[int] = (256,), activation: str = "relu"):
        super().__init__()
        h, w = image_hw(image_size)
        self.shape = (out_channels, h, w)
        self.mlp = MLP(latent_dim, out_channels * h * w, hidden_sizes=list(hidden_sizes), activation=activation)

    def forward(self, z: Tensor) -> Tensor:
        return self.mlp(z).view(z.size(0), *self.shape)


class AutoEncoderNet(nn.Module):
    """Encoder + decoder pair. ``kind``: ``dense`` (``hidden_sizes`` from the input inwards) or
    ``conv`` (``channels`` from the input inwards; the decoder mirrors them). ``code_factor=2``
    makes the encoder output ``2 * latent_dim`` numbers (a VAE's mean and log-variance)."""

    def __init__(self, in_channels: int, image_size: int | Sequence[int], latent_dim: int = 32, kind: str = "dense",
                 hidden_sizes: Sequence[int] = (256,), channels: Sequence[int] = (32, 64), activation: str = "relu",
                 batch_norm: bool = False, code_factor: int = 1):
        super().__init__()
        if kind not in KINDS:
            raise ConfigError(f"unknown autoencoder kind {kind!r}; available: {', '.join(KINDS)}")
        if not isinstance(latent_dim, int) or latent_dim <= 0:
            raise ConfigError(f"latent_dim must be a positive integer, got {latent_dim!r}")
        self.kind, self.latent_dim = kind, latent_dim
        h, w = image_hw(image_size)
        self.image_shape = (in_channels, h, w)
        if kind == "dense":
            self.encoder: nn.Module = MLP(in_channels * h * w, latent_dim * code_factor, hidden_sizes=list(hidden_sizes),
                                          activation=activation, batch_norm=batch_norm)
            self.decoder: nn.Module = DenseDecoder(latent_dim, in_channels, (h, w), list(reversed(list(hidden_sizes))),
                                                   activation)
        else:
            self.encoder = ConvNet(in_channels, (h, w), latent_dim * code_factor, channels, activation, batch_norm)
            self.decoder = ConvDecoder(latent_dim, in_channels, (h, w), list(reversed(list(channels))), activation,
                                       batch_norm)

    def encode(self, x: Tensor) -> Tensor:
        return self.encoder(x)

    def decode(self, z: Tensor) -> Tensor:
        return self.decoder(z)

    def forward(self, x: Tensor) -> Tensor:
        return self.decode(self.encode(x))


def add_noise(x: Tensor, kind: str | None, level: float, generator: torch.Generator | None = None) -> Tensor:
    """Corrupt a batch for a denoising autoencoder: ``gaussian`` (x + N(0, level^2)) or ``masking``
    (each pixel set to 0 with probability ``level``). ``None``/``none`` returns ``x``."""
    if kind in (None, "none") or level == 0:
        return x
    if kind == "gaussian":
        return x + level * torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    if kind == "masking":
        keep = torch.rand(x.shape, generator=generator, device=x.device) >= level
        return x * keep.to(x.dtype)
    raise ConfigError(f"unknown noise {kind!r}; available: gaussian, masking, none")
