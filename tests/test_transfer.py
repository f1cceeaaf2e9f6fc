"""Transfer learning mechanics: init_from copies exactly the backbone tensors, the head is new,
freezing keeps the backbone unchanged through training steps, unfreezing lets it move, and
the backbone can have its own learning rate; class subsets relabel the data."""

from __future__ import annotations

import pytest
import torch

from conftest import make_cfg
from seqgen.data import ImageDataModule
from seqgen.errors import CheckpointError, ConfigError
from seqgen.models import Classifier
from seqgen.train import apply_init_from, run

FAST = ["callbacks.progress_bar=null", "trainer.num_sanity_val_steps=0", "trainer.enable_model_summary=false", "logger=none"]


@pytest.fixture(scope="module")
def source_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("src")
    run(make_cfg(tmp, ["task=digits_lenet_0to4", "trainer.max_epochs=1", "trainer.limit_train_batches=5", *FAST]))
    return tmp / "run"


def test_class_subset_relabels_and_counts():
    dm = ImageDataModule("digits", class_subset=[5, 6, 7, 8, 9], train_per_class=10)
    dm.setup()
    y = dm.splits["train"][1]
    assert torch.equal(torch.bincount(y), torch.full((5,), 10))
    assert dm.dims["num_classes"] == 5 and set(dm.splits["test"][1].tolist()) == {0, 1, 2, 3, 4}
    with pytest.raises(ConfigError, match="do not occur"):
        ImageDataModule("digits", class_subset=[3, 12]).setup()


def test_init_from_restores_backbone_exactly_and_freezing_holds(source_run, tmp_path):
    src = torch.load(source_run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)["state_dict"]
    cfg = make_cfg(tmp_path, ["task=digits_transfer_0to4_5to9", f"model.init_from={source_run}", "model.unfreeze_at_epoch=null",
                              "trainer.max_epochs=2", "trainer.limit_train_batches=3", *FAST])
    run(cfg)
    after = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)["state_dict"]
    head = {"net.classifier.3.weight", "net.classifier.3.bias"}
    backbone = [k for k in src if k.startswith("net.") and k not in head]
    assert len(backbone) == 8  # C1, C3, C5, F6 weights and biases
    for k in backbone:
        assert torch.equal(src[k], after[k]), f"{k} changed although the backbone was frozen"
    assert after["net.classifier.3.weight"].shape == (5, 84)  # a new head for the 5 new classes


def test_unfreezing_and_head_choice(source_run, tmp_path):
    model = Classifier(net={"_target_": "seqgen.nets.vision.build_net", "name": "lenet5"}, num_classes=5, in_channels=1,
                       image_size=[8, 8], init_from=str(source_run), freeze_backbone=True, unfreeze_at_epoch=1,
                       backbone_lr_mult=0.1, optimizer={"name": "adam", "lr": 0.01})
    assert model.head_parameter_names() == {"classifier.3.weight", "classifier.3.bias"}
    apply_init_from(model, resuming=False)
    (freeze,) = model.configure_callbacks()  # Lightning's BaseFinetuning, attached by the model
    freeze.freeze_before_training(model)
    assert len(model.loaded_from_init) == 8
    assert not model.net.features[0].weight.requires_grad and model.net.classifier[3].weight.requires_grad
    freeze.finetune_function(model, 0, None)
    assert not model.net.features[0].weight.requires_grad
    freeze.finetune_function(model, 1, None)  # unfreeze_at_epoch=1 (and every later epoch, after a resume)
    assert model.net.features[0].weight.requires_grad
    groups = model.optimizer_groups(0.01, 0.0, False)
    assert [g["lr"] for g in groups] == [pytest.approx(0.001), 0.01]
    cfg = make_cfg(tmp_path, ["task=digits_transfer_0to4_5to9", f"model.init_from={source_run}", "model.unfreeze_at_epoch=1",
                              "trainer.max_epochs=2", "trainer.limit_train_batches=3", *FAST])
    run(cfg)
    src = torch.load(source_run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)["state_dict"]
    after = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)["state_dict"]
    assert not torch.equal(src["net.features.0.weight"], after["net.features.0.weight"])  # moved after epoch 1


def test_init_from_errors(tmp_path):
    model = Classifier(net={"_target_": "seqgen.nets.MLP", "hidden_sizes": [8]}, num_classes=3, input_size=64,
                       init_from=str(tmp_path / "nope.ckpt"))
    with pytest.raises(CheckpointError, match="not found"):
        apply_init_from(model, resuming=False)
    apply_init_from(model, resuming=True)  # resuming: the source is not read at all
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(b"garbage")
    model.init_from = str(bad)
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        apply_init_from(model, resuming=False)
    with pytest.raises(CheckpointError, match="no tensor"):
        model.load_backbone_state({"net.something.weight": torch.zeros(2, 2)}, "other.ckpt")


@pytest.mark.slow
@pytest.mark.learning
def test_transfer_learns_5_to_9_from_10_labels_per_class(tmp_path, learn_seed, lesson):
    """The worked example: LeNet features learnt on real MNIST 0-4, then 5-9 from 50 labels (frozen
    backbone for 3 epochs, then fine-tuned). That transfer *beats* training from scratch is not
    asserted: over 5 seeds x 2 thread counts the gain ranged from -12.2 to +8.2 points for one seed
    (median +4.4) and from -4.4 to +5.2 for the median of three seeds, within seed noise (README)."""
    quiet = ["callbacks.progress_bar=null", "logger=none", "trainer.enable_model_summary=false", "trainer.num_sanity_val_steps=0",
             "callbacks.loss_curves=null", "callbacks.confusion=null", f"seed={learn_seed}"]
    run(make_cfg(tmp_path / "src", ["task=digits_lenet_0to4", *quiet]))
    transfer = run(make_cfg(tmp_path / "tl", ["task=digits_transfer_0to4_5to9", *quiet,
                                              f"model.init_from={tmp_path / 'src' / 'run'}"]))
    lesson("transferred test accuracy on 5-9 (chance 0.2)", transfer["test/acc"], ">", 0.65)


def _bn(name: str, c: int) -> list[tuple[str, tuple[int, ...]]]:
    return [(f"{name}.weight", (c,)), (f"{name}.bias", (c,)), (f"{name}.running_mean", (c,)),
            (f"{name}.running_var", (c,)), (f"{name}.num_batches_tracked", ())]


def torchvision_resnet18_layout() -> list[tuple[str, tuple[int, ...]]]:
    """torchvision.models.resnet18().state_dict(): names and shapes, written out from its definition
    (torchvision cannot be installed beside this CPU torch, so the layout is spelled out here)."""
    out = [("conv1.weight", (64, 3, 7, 7)), *_bn("bn1", 64)]
    cin = 64
    for i, planes in enumerate((64, 128, 256, 512), 1):
        for b in range(2):
            p, inp = f"layer{i}.{b}", cin if b == 0 else planes
            out += [(f"{p}.conv1.weight", (planes, inp, 3, 3)), *_bn(f"{p}.bn1", planes),
                    (f"{p}.conv2.weight", (planes, planes, 3, 3)), *_bn(f"{p}.bn2", planes)]
            if b == 0 and inp != planes:
                out += [(f"{p}.downsample.0.weight", (planes, inp, 1, 1)), *_bn(f"{p}.downsample.1", planes)]
        cin = planes
    return out + [("fc.weight", (1000, 512)), ("fc.bias", (1000,))]


def test_imagenet_weights_from_torchvision_layout_load_in_order(monkeypatch):
    import seqgen.checkpoints as ckpts

    g = torch.Generator().manual_seed(0)
    theirs = {k: (torch.randint(0, 100, s, generator=g) if k.endswith("num_batches_tracked") else torch.randn(s, generator=g))
              for k, s in torchvision_resnet18_layout()}
    monkeypatch.setattr(ckpts, "pretrained_state", lambda ref: theirs)
    model = Classifier(net={"_target_": "seqgen.nets.vision.build_net", "name": "resnet18"}, num_classes=10, in_channels=3,
                       image_size=[224, 224], init_from="torchvision:resnet18")
    head_before = model.net.fc.weight.detach().clone()
    apply_init_from(model, resuming=False)
    assert len(model.loaded_from_init) == len(theirs) - 2  # everything but ImageNet's 1000-class head
    own = model.net.state_dict()
    assert torch.equal(own["stem.0.weight"], theirs["conv1.weight"])
    assert torch.equal(own["layer2.0.shortcut.0.weight"], theirs["layer2.0.downsample.0.weight"])
    assert torch.equal(own["layer4.1.bn2.running_var"], theirs["layer4.1.bn2.running_var"])
    assert torch.equal(model.net.fc.weight, head_before)  # the 10-class head stays new

    small = Classifier(net={"_target_": "seqgen.nets.vision.build_net", "name": "resnet18"}, num_classes=10, in_channels=3,
                       image_size=[32, 32], init_from="torchvision:resnet18")
    with pytest.raises(CheckpointError, match="224"):  # the CIFAR stem (3x3, no max-pool) cannot take a 7x7 kernel
        apply_init_from(small, resuming=False)


def test_imagenet_weights_without_the_library_is_a_clear_error(monkeypatch):
    import sys

    from seqgen.checkpoints import pretrained_state

    monkeypatch.setitem(sys.modules, "torchvision", None)
    monkeypatch.setitem(sys.modules, "torchvision.models", None)
    with pytest.raises(CheckpointError, match="pip install torchvision"):
        pretrained_state("torchvision:resnet18")
    with pytest.raises(CheckpointError, match="unknown source"):
        pretrained_state("keras:resnet18")


def test_a_net_without_head_names_cannot_be_transferred_or_frozen():
    import torch.nn as nn

    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 3))
    plain = Classifier(net=net, num_classes=3)
    assert plain.head_parameter_names() == set() and plain.configure_callbacks() == []
    with pytest.raises(ConfigError, match="does not name its head"):
        Classifier(net=net, num_classes=3, freeze_backbone=True).configure_callbacks()
    net.head_names = ("1",)
    assert Classifier(net=net, num_classes=3, freeze_backbone=True).head_parameter_names() == {"1.weight", "1.bias"}
