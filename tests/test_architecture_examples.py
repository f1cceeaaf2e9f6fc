"""The three worked examples of docs/architecture.md work as written: a dataset added as one reader,
a net added as one class (its dims arrive from the data, a misspelt key is refused), an objective
added as one LightningModule on SeqgenModule."""

from __future__ import annotations

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from conftest import make_cfg
from seqgen.data.images import IMAGE_DATASETS, ImageDataModule, load_digits_dataset
from seqgen.errors import ConfigError
from seqgen.models.base import SeqgenModule, build_net
from seqgen.train import run

FAST = ["trainer=debug", "callbacks.progress_bar=null", "logger=none"]


class TinyCNN(nn.Module):
    def __init__(self, num_classes: int, in_channels: int = 1, width: int = 32):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(in_channels, width, 3, padding=1), nn.ReLU(),
                                      nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.fc = nn.Linear(width, num_classes)
        self.head_names = ("fc",)

    def forward(self, x):
        return self.fc(self.features(x))


class Regressor(SeqgenModule):
    def __init__(self, net: dict, input_size: int, optimizer: dict | None = None, scheduler: dict | None = None):
        super().__init__(optimizer, scheduler)
        self.save_hparams_with_net(net)
        self.net = build_net(net, input_size=input_size, num_classes=1)

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = F.mse_loss(self.net(x).squeeze(-1), y)
        self.log("train/loss", loss, prog_bar=True)
        return loss


def test_a_dataset_is_one_reader():
    name = "digits_again"
    if name not in IMAGE_DATASETS:
        @IMAGE_DATASETS.register(name, shape=lambda dm: (1, 8, 8), num_classes=lambda dm: 10)
        def read(dm):
            return load_digits_dataset(), [str(i) for i in range(10)]

    dm = ImageDataModule(name)
    assert dm.dims == {"num_classes": 10, "in_channels": 1, "image_size": [8, 8], "input_size": 64}
    assert not dm.splits  # dims read nothing
    dm.setup()
    assert set(dm.splits) == {"train", "val", "test"} and dm.splits["train"][0].shape[1:] == (1, 8, 8)
    with pytest.raises(ConfigError, match="available: digits, mnist5k"):
        ImageDataModule("digits_agian")


def test_a_net_is_one_class(tmp_path):
    target = f"{__name__}.TinyCNN"
    metrics = run(make_cfg(tmp_path / "ok", ["task=digits_lenet", f"model.net._target_={target}", "~model.net.name",
                                             "+model.net.width=16", *FAST]))
    assert "test/acc" in metrics
    with pytest.raises(ConfigError, match=r"unknown key model\.net\.widht .*it accepts: num_classes, in_channels, width"):
        run(make_cfg(tmp_path / "typo", ["task=digits_lenet", f"model.net._target_={target}", "~model.net.name",
                                         "+model.net.widht=16", *FAST]))


def test_an_objective_is_one_module():
    model = Regressor({"_target_": "seqgen.nets.MLP", "hidden_sizes": [16]}, input_size=4,
                      optimizer={"name": "adam", "lr": 0.01})
    x = torch.randn(256, 4)
    y = x.sum(1)
    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=32)
    trainer = L.Trainer(max_epochs=20, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False)
    before = F.mse_loss(model.net(x).squeeze(-1), y).item()
    trainer.fit(model, data)
    after = F.mse_loss(model.net(x).squeeze(-1), y).item()
    assert after < 0.2 * before, (before, after)
    assert model.hparams["net"]["_target_"] == "seqgen.nets.MLP"  # plain data: weights_only checkpoints


def _imports(path):
    import ast

    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            yield node.module


@pytest.mark.parametrize("package,forbidden", [
    ("nets", ("lightning", "hydra", "omegaconf", "seqgen.data", "seqgen.models", "seqgen.train", "seqgen.callbacks")),
    ("data", ("seqgen.models", "seqgen.nets")),
    ("models", ("seqgen.data", "seqgen.train")),  # a model may attach its own callbacks (BackboneFreeze)
])
def test_the_arrows_point_one_way(package, forbidden):
    """docs/architecture.md's arrows, checked on every module's imports (lazy ones too)."""
    from conftest import ROOT

    bad = [f"{p.relative_to(ROOT)} imports {m}" for p in sorted((ROOT / "seqgen" / package).rglob("*.py"))
           for m in _imports(p) if m.startswith(forbidden)]
    assert not bad, bad
