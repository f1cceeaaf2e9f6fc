"""The CNN catalogue: published parameter counts, forward/backward at supported sizes, clear
errors for sizes a net cannot take."""

from __future__ import annotations

import pytest
import torch

from seqgen.errors import ConfigError
from seqgen.nets.vision import NETS, build_net

# published / torchvision counts at 224 px and 1000 classes (LeNet-5: 32 px, 10 classes)
COUNTS = {
    "lenet5": 61_706, "alexnet": 61_100_840, "vgg16": 138_357_544, "vgg16_bn": 138_365_992,
    "resnet18": 11_689_512, "resnet34": 21_797_672, "resnet50": 25_557_032, "densenet121": 7_978_856,
    "squeezenet1_1": 1_235_496,
}


def _count(net):
    return sum(p.numel() for p in net.parameters())


@pytest.mark.parametrize("name,expected", sorted(COUNTS.items()))
def test_published_parameter_counts(name, expected):
    small = name.startswith("lenet")
    with torch.device("meta"):
        net = build_net(name, num_classes=10 if small else 1000, in_channels=1 if small else 3, image_size=32 if small else 224)
    assert _count(net) == expected


def _layer_table(convs: list[tuple[int, int, int]], fcs: list[tuple[int, int]]) -> int:
    """Weights + biases of conv layers (in, out, kernel) and linear layers (in, out)."""
    return sum(i * o * k * k + o for i, o, k in convs) + sum(i * o + o for i, o in fcs)


def test_zfnet_and_nin_counts_follow_their_papers_layer_tables():
    """No torchvision reference exists for these two: the expected counts are computed from the
    papers' own layer tables (ZFNet: Zeiler & Fergus 2014, fig. 3; NiN: the ImageNet model of
    Lin et al. 2014, Caffe model zoo layout), not read off our implementation."""
    zfnet = _layer_table([(3, 96, 7), (96, 256, 5), (256, 384, 3), (384, 384, 3), (384, 256, 3)],
                         [(6 * 6 * 256, 4096), (4096, 4096), (4096, 1000)])
    nin = _layer_table([(3, 96, 11), (96, 96, 1), (96, 96, 1), (96, 256, 5), (256, 256, 1), (256, 256, 1),
                        (256, 384, 3), (384, 384, 1), (384, 384, 1), (384, 1024, 3), (1024, 1024, 1), (1024, 1000, 1)], [])
    assert (zfnet, nin) == (62_357_608, 7_595_176)  # the README's numbers
    with torch.device("meta"):
        assert _count(build_net("zfnet", num_classes=1000, in_channels=3, image_size=224)) == zfnet
        assert _count(build_net("nin", num_classes=1000, in_channels=3, image_size=224)) == nin


def test_googlenet_counts():
    with torch.device("meta"):
        torchvision_layout = build_net("googlenet", num_classes=1000, image_size=224, branch3_kernel=3)
        paper = build_net("googlenet", num_classes=1000, image_size=224)
        with_aux = build_net("googlenet", num_classes=1000, image_size=224, branch3_kernel=3, aux_logits=True)
    assert _count(torchvision_layout) == 6_624_904  # torchvision googlenet(aux_logits=False)
    assert 6.9e6 < _count(paper) < 7.1e6  # the paper's 5x5 branch, with batch norm
    assert _count(with_aux) > _count(torchvision_layout) + 5e6


@pytest.mark.parametrize("name", list(NETS))
def test_forward_backward_small_images(name):
    torch.manual_seed(0)
    gray = name.startswith("lenet")
    sizes = (8, 28, 32) if gray else (28, 32)
    for size in sizes:
        net = build_net(name, num_classes=7, in_channels=1 if gray else 3, image_size=size)
        x = torch.randn(2, 1 if gray else 3, size, size)
        out = net(x)
        assert out.shape == (2, 7)
        out.sum().backward()
        assert all(p.grad is not None for p in net.parameters() if p.requires_grad)


@pytest.mark.parametrize("name", [n for n in NETS if not n.startswith(("lenet", "vgg1", "vgg"))] + ["vgg11"])
def test_forward_paper_size(name):
    net = build_net(name, num_classes=1000, in_channels=3, image_size=224).eval()
    with torch.no_grad():
        assert net(torch.randn(1, 3, 224, 224)).shape == (1, 1000)


def test_googlenet_returns_aux_outputs_only_in_training():
    from seqgen.nets.vision.googlenet import GoogLeNetOutputs

    net = build_net("googlenet", num_classes=5, image_size=32, aux_logits=True)
    net.train()
    out = net(torch.randn(2, 3, 32, 32))
    assert isinstance(out, GoogLeNetOutputs) and out.logits.shape == out.aux_logits1.shape == (2, 5)
    assert len(out.aux) == 2 and not hasattr(net, "aux_outputs")  # nothing stashed on the module
    net.eval()
    assert net(torch.randn(2, 3, 32, 32)).shape == (2, 5)


def test_bad_names_and_sizes():
    with pytest.raises(ConfigError, match="available: lenet5"):
        build_net("resnet19")
    with pytest.raises(ConfigError, match="at least 28x28"):
        build_net("vgg16", image_size=16)
    with pytest.raises(ConfigError, match="square"):
        build_net("resnet18", image_size=[32, 28])


@pytest.mark.slow
@pytest.mark.learning
def test_digits_lenet_reaches_97_percent(tmp_path, learn_seed, lesson):
    from conftest import make_cfg
    from seqgen.train import run

    metrics = run(make_cfg(tmp_path, ["task=digits_lenet", "callbacks.progress_bar=null", "trainer.num_sanity_val_steps=0",
                                      f"seed={learn_seed}"]))
    lesson("test accuracy", metrics["test/acc"], ">=", 0.97)  # worst of 5 seeds x 2 thread counts: 0.983
    for png in ("confusion.png", "misclassified.png", "loss.png"):
        assert (tmp_path / "run" / "plots" / png).read_bytes()[:4] == b"\x89PNG", png


def test_channels_last_classifier_matches_default_layout():
    from seqgen.models import Classifier

    torch.manual_seed(0)
    spec = {"_target_": "seqgen.nets.vision.build_net", "name": "resnet18"}
    a = Classifier(net=spec, num_classes=10, in_channels=3, image_size=[32, 32]).eval()
    b = Classifier(net=spec, num_classes=10, in_channels=3, image_size=[32, 32], channels_last=True).eval()
    b.net.load_state_dict(a.net.state_dict())
    assert b.net.stem[0].weight.is_contiguous(memory_format=torch.channels_last)
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(a(x), b(x.contiguous(memory_format=torch.channels_last)), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("name", sorted(NETS))
def test_every_catalogue_net_names_its_head(name):
    """``head_names``: the layers that make the class scores (what transfer learning replaces),
    declared by each net, at its CIFAR and its ImageNet size."""
    for size in (32, 224):
        try:
            net = build_net(name, num_classes=7, image_size=size, **({"aux_logits": True} if name == "googlenet" else {}))
        except ConfigError:  # a size this net does not take
            continue
        for head in net.head_names:
            layer = net.get_submodule(head)
            assert getattr(layer, "out_features", getattr(layer, "out_channels", None)) == 7, (name, size, head)


@pytest.mark.parametrize("channels", [1, 3])
def test_misclassified_grid_draws_every_mistake_as_its_own_tile(tmp_path, channels):
    """``plots/misclassified.png``: one tile per mistake (7 here: a row of 6 and one), each its image
    rescaled for display, gray or colour."""
    import numpy as np
    from PIL import Image
    from scipy import ndimage

    from seqgen.callbacks.plots import write_mistakes

    img = torch.full((channels, 12, 12), -2.0)
    img[:, 4:8, 4:8] = 3.0  # a normalised image: a bright square on a dark ground
    write_mistakes(tmp_path / "m.png", [(img, i, (i + 1) % 10) for i in range(7)], [str(c) for c in range(10)])
    pixels = np.asarray(Image.open(tmp_path / "m.png").convert("RGB")).astype(int)
    dark = (pixels < 40).all(-1)  # the tiles' dark ground (captions are dark red, the title's letters small)
    labels, n = ndimage.label(dark)
    sizes = np.bincount(labels.ravel())[1:]
    assert (sizes > 20 * sizes.max() / 100).sum() == 7  # seven tile-sized dark regions
