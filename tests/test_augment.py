"""Batched augmentations keep shape and dtype, are identity at eval, reproducible with a seed."""

from __future__ import annotations

import pytest
import torch

from seqgen.errors import ConfigError
from seqgen.nets.augment import (
    ColorJitter,
    Cutout,
    GaussianNoise,
    HorizontalFlip,
    RandomAffine,
    RandomCrop,
    build_augment,
)

OPS = [HorizontalFlip(), RandomCrop(2), RandomCrop(2, mode="reflect"), RandomAffine(15, 0.1, (0.9, 1.1)),
       ColorJitter(0.2, 0.2), GaussianNoise(0.1), Cutout(4), RandomAffine(10, p=0.5)]


@pytest.mark.parametrize("op", OPS, ids=lambda o: type(o).__name__)
def test_shape_dtype_eval_identity_and_seed(op):
    x = torch.rand(6, 3, 16, 16)
    op.train()
    torch.manual_seed(0)
    a = op(x)
    torch.manual_seed(0)
    b = op(x)
    assert a.shape == x.shape and a.dtype == x.dtype
    torch.testing.assert_close(a, b)
    assert not torch.equal(a, x)
    op.eval()
    assert op(x) is x


def test_random_crop_is_a_shift_of_the_padded_image():
    x = torch.arange(16.0).view(1, 1, 4, 4).repeat(5, 1, 1, 1)
    torch.manual_seed(1)
    out = RandomCrop(1).train()(x)
    padded = torch.nn.functional.pad(x, (1, 1, 1, 1))
    for b in range(5):
        assert any(torch.equal(out[b, 0], padded[b, 0, dy : dy + 4, dx : dx + 4]) for dy in range(3) for dx in range(3))


def test_cutout_zeroes_a_square_and_flip_flips():
    x = torch.ones(4, 1, 10, 10)
    out = Cutout(3).train()(x)
    zeros = (out == 0).sum(dim=(1, 2, 3))
    assert ((zeros >= 4) & (zeros <= 16)).all()
    y = torch.arange(4.0).view(1, 1, 1, 4)
    assert torch.equal(HorizontalFlip(p=1.0).train()(y), y.flip(-1))


def test_identity_affine_keeps_image():
    x = torch.rand(2, 1, 8, 8)
    torch.testing.assert_close(RandomAffine().train()(x), x, atol=1e-5, rtol=0)


def test_build_and_errors():
    seq = build_augment([{"_target_": "seqgen.nets.augment.HorizontalFlip", "p": 1.0}])
    assert len(seq) == 1 and len(build_augment(None)) == 0
    with pytest.raises(ConfigError):
        Cutout(0)
    with pytest.raises(ConfigError):
        RandomAffine(translate=2.0)
    with pytest.raises(ConfigError, match="B, C, H, W"):
        HorizontalFlip().train()(torch.rand(3, 4))
