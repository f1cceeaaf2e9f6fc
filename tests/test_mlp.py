"""Feed-forward nets and the Classifier recipe: maxout, initialisation variances, losses,
per-layer gradient norms, and the lessons (depth x activation, regularisation) on real digits."""

from __future__ import annotations

import csv
import math

import pytest
import torch
import torch.nn.functional as F

from conftest import make_cfg
from seqgen.data import ImageDataModule
from seqgen.errors import ConfigError
from seqgen.models import Classifier
from seqgen.models.classifier import mse_on_softmax
from seqgen.nets import MLP, Maxout
from seqgen.nets.mlp import init_linear
from seqgen.train import run

FAST = ["callbacks.progress_bar=null", "trainer.num_sanity_val_steps=0", "trainer.enable_model_summary=false"]
DEEP = "model.net.hidden_sizes=[64,64,64,64,64,64,64,64,64,64]"


def test_maxout_is_max_over_pieces_and_reduces_to_relu():
    torch.manual_seed(0)
    m = Maxout(6, 4, pieces=3)
    x = torch.randn(5, 6)
    pieces = (x @ m.linear.weight.T + m.linear.bias).view(5, 4, 3)
    torch.testing.assert_close(m(x), pieces.max(-1).values)
    relu_like = Maxout(6, 4, pieces=2)
    with torch.no_grad():
        w = relu_like.linear.weight.view(4, 2, 6)
        w[:, 1].zero_()
        relu_like.linear.bias.view(4, 2)[:, 1].zero_()
    with torch.no_grad():
        w = relu_like.linear.weight.view(4, 2, 6)
        z = x @ w[:, 0].T + relu_like.linear.bias.view(4, 2)[:, 0]
        torch.testing.assert_close(relu_like(x), F.relu(z))


@pytest.mark.parametrize("scheme,expected", [("glorot", 2 / (800 + 1200)), ("he", 2 / 800), ("normal", 0.05**2)])
def test_init_variance(scheme, expected):
    torch.manual_seed(0)
    layer = torch.nn.Linear(800, 1200)
    init_linear(layer, scheme, std=0.05)
    assert layer.weight.var().item() == pytest.approx(expected, rel=0.03)
    assert layer.bias.abs().max() == 0


def test_losses_match_hand_computation():
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.5, 0.5, 0.0]])
    y = torch.tensor([0, 2])
    p = [[math.exp(v) for v in row] for row in logits.tolist()]
    p = [[v / sum(row) for v in row] for row in p]
    ce = -(math.log(p[0][0]) + math.log(p[1][2])) / 2
    mse = (sum((p[0][k] - (k == 0)) ** 2 for k in range(3)) + sum((p[1][k] - (k == 2)) ** 2 for k in range(3))) / 2
    model = Classifier(net=MLP(3, 3, [4]), num_classes=3, loss="cross_entropy")
    assert model.loss_fn(logits, y).item() == pytest.approx(ce, rel=1e-6)
    assert mse_on_softmax(logits, y).item() == pytest.approx(mse, rel=1e-6)
    assert Classifier(net=MLP(3, 3, [4]), num_classes=3, loss="mse").loss_fn(logits, y).item() == pytest.approx(mse, rel=1e-6)


@pytest.mark.parametrize("kwargs,match", [
    ({"activation": "swish"}, "available: sigmoid, tanh, relu"),
    ({"activation": "maxout", "pieces": 1}, "pieces >= 2"),
    ({"hidden_sizes": [], "activation": "sigmoid"}, "hidden_sizes is empty"),
    ({"dropout": -0.1}, "dropout"),
    ({"hidden_sizes": [10, 0]}, r"hidden_sizes\[1\]"),
    ({"init": "xavier"}, "available: default, glorot, he, normal"),
])
def test_mlp_bad_config(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        MLP(64, 10, **kwargs)


@pytest.mark.parametrize("override,match", [
    ("model.net.activation=swish", "available: sigmoid"),
    ("model.optimizer.name=lbfgs", "available: sgd, adagrad"),
    ("model.net.dropout=-0.5", "model.net.dropout"),
    ("model.loss=hinge", "available: cross_entropy, mse"),
])
def test_bad_recipe_values_fail_before_training(tmp_path, override, match):
    with pytest.raises(ConfigError, match=match):
        run(make_cfg(tmp_path, ["task=digits_mlp", "trainer=debug", override]))
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_grad_norms_logged_per_layer(tmp_path):
    run(make_cfg(tmp_path, ["task=digits_mlp", "model.log_grad_norms=true", "model.grad_norm_every=1",
                            "trainer.max_epochs=1", "trainer.log_every_n_steps=1", *FAST]))
    with open(tmp_path / "run" / "metrics.csv") as f:
        header = next(csv.reader(f))
    names = sorted(h for h in header if h.startswith("grad_norm/"))
    assert names == ["grad_norm/features.1.weight", "grad_norm/features.3.weight", "grad_norm/head.weight"]


@pytest.mark.slow
@pytest.mark.learning
def test_two_layer_relu_mlp_on_digits(tmp_path, learn_seed, lesson):
    metrics = run(make_cfg(tmp_path, ["task=digits_mlp", f"seed={learn_seed}", *FAST]))
    lesson("test accuracy", metrics["test/acc"], ">=", 0.94)  # worst of 5 seeds x 2 thread counts: 0.964
    assert (tmp_path / "run" / "plots" / "confusion.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.slow
@pytest.mark.learning
def test_deep_sigmoid_stays_far_below_deep_relu(tmp_path, learn_seed, lesson):
    """Ten layers, plain SGD: each activation with the initialisation designed for it (Glorot for the
    sigmoid, He for ReLU). The sigmoid net's gradients vanish and it stays at chance; ReLU learns.
    lr 0.05 keeps the ReLU trajectory out of the chaotic regime (at lr 0.2 one seed ended at 0.66
    and another at 0.95 on the same machine)."""
    common = ["task=digits_mlp", DEEP, "model.optimizer.name=sgd", "model.optimizer.lr=0.05",
              "model.optimizer.momentum=0.0", "trainer.max_epochs=20", "callbacks.early_stopping=null", "logger=none",
              f"seed={learn_seed}", *FAST]
    sig = run(make_cfg(tmp_path / "sig", [*common, "model.net.activation=sigmoid", "model.net.init=glorot"]))
    relu = run(make_cfg(tmp_path / "relu", [*common, "model.net.activation=relu", "model.net.init=he"]))
    lesson("sigmoid test accuracy (chance 0.1)", sig["test/acc"], "<", 0.3)
    lesson("ReLU test accuracy", relu["test/acc"], ">", 0.8)


def _train_test(run_dir, dm):
    """Accuracy and cross-entropy of the final weights on the training and test sets."""
    model = Classifier.load_from_checkpoint(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    model.eval()
    out = {}
    with torch.no_grad():
        for split in ("train", "test"):
            x, y = dm.splits[split]
            logits = model(x)
            out[split] = (logits.argmax(-1) == y).float().mean().item()
            out[f"{split}_loss"] = F.cross_entropy(logits, y).item()
    return out


@pytest.mark.slow
@pytest.mark.learning
def test_weight_decay_narrows_the_generalisation_gap_on_500_images(tmp_path, learn_seed, lesson):
    """500 real MNIST digits: the plain net memorises them (train loss ~0) and its test
    cross-entropy climbs; L2 weight decay keeps the train/test loss gap clearly smaller."""
    common = ["task=digits_mlp", "data.dataset=mnist5k", "data.train_size=500", "model.net.hidden_sizes=[500,500]",
              "trainer.max_epochs=60", "callbacks.early_stopping=null", "logger=none", f"seed={learn_seed}", *FAST]
    run(make_cfg(tmp_path / "plain", common))
    run(make_cfg(tmp_path / "wd", [*common, "model.optimizer.weight_decay=0.003"]))
    dm = ImageDataModule("mnist5k", train_size=500)
    dm.setup()
    plain = _train_test(tmp_path / "plain" / "run", dm)
    wd = _train_test(tmp_path / "wd" / "run", dm)
    lesson("plain: train accuracy (memorised)", plain["train"], ">=", 0.99)
    lesson("plain: test accuracy (still useful)", plain["test"], ">", 0.8)
    gap_plain = plain["test_loss"] - plain["train_loss"]
    gap_wd = wd["test_loss"] - wd["train_loss"]
    lesson("loss gap with weight decay / without", gap_wd / gap_plain, "<", 0.85)


def test_the_training_accuracy_is_torchmetrics_micro_accuracy_of_the_epochs_batches(tmp_path):
    """``train/acc`` (a few kernels a step, averaged by batch size over each group of steps per
    execution and the epoch) equals torchmetrics' ``MulticlassAccuracy(average="micro")`` over the
    same training examples: with a learning rate of 1e-30 (an Adam step of about 1e-30, below a float's
    resolution at these weights) the net is the same at every step, so the
    epoch's batches (an uneven last batch and an uneven last group of K=8 included) are scored by one net."""
    from torchmetrics.classification import MulticlassAccuracy

    from seqgen.train import build_datamodule, build_model

    cfg = make_cfg(tmp_path, ["task=digits_mlp", "trainer.max_epochs=1", "model.optimizer.lr=1e-30", "model.net.dropout=0",
                              "steps_per_execution=8", "test=false", "logger=csv", *FAST])
    metrics = run(cfg)
    dm = build_datamodule(cfg)
    dm.setup("fit")
    model = build_model(cfg, dm.dims)
    ckpt = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True)
    model.load_state_dict(ckpt["state_dict"])
    model.eval()
    reference = MulticlassAccuracy(dm.dims["num_classes"], average="micro")
    sizes = []
    with torch.no_grad():
        for x, y in dm.train_dataloader():
            reference.update(model(x), y)
            sizes.append(len(y))
    assert len(sizes) % 8 and sizes[-1] != sizes[0]  # an uneven last group and an uneven last batch
    assert 0.02 < metrics["train/acc"] < 0.5  # an untrained net: far from a trivial 0 or 1
    assert metrics["train/acc"] == pytest.approx(reference.compute().item(), abs=1e-6)
