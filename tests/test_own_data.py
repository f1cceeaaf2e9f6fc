"""The README's "Your own data" commands, each run exactly as printed (in-process, from a folder
holding the files they name, written here in the formats the README describes)."""

from __future__ import annotations

import csv
import re
import shlex

import pytest
import torch
from PIL import Image

from conftest import ROOT, make_cfg
from seqgen.data import ImageDataModule, date_pairs
from seqgen.train import run


def readme_commands() -> list[list[str]]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Your own data", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    return [shlex.split(line)[2:] for line in block.splitlines() if line.startswith("python scripts/train.py ")]


def _images(root, rng):
    """Two classes told apart by colour, in train/ val/ test/ (ImageFolder layout, PNG files)."""
    for split, n in (("train", 24), ("val", 6), ("test", 8)):
        for label, colour in (("red", (200, 30, 30)), ("blue", (30, 30, 200))):
            d = root / "my_images" / split / label
            d.mkdir(parents=True)
            for i in range(n):
                noise = torch.randint(-40, 40, (20, 20, 3), generator=rng)
                px = (torch.tensor(colour) + noise).clamp(0, 255).to(torch.uint8).numpy()
                Image.fromarray(px).save(d / f"{i}.png")


def _files(root):
    rng = torch.Generator().manual_seed(0)
    _images(root, rng)
    import fixtures

    (root / "my_text.txt").write_text("\n".join(fixtures._sentences(60, 3, unk=False)) + "\n", encoding="utf-8")
    words = {"pos": "good great fine lovely superb", "neg": "bad awful poor dull horrid"}
    for name, n in (("my_train.csv", 120), ("my_test.csv", 40)):
        with open(root / name, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["text", "label"])
            for i in range(n):
                label = ("pos", "neg")[i % 2]
                w.writerow([f"the film was {words[label].split()[i % 5]} and the plot, too", label])
    src, tgt = date_pairs(300, seed=5)
    (root / "my_pairs.tsv").write_text("".join(f"{a}\t{b}\n" for a, b in zip(src, tgt)), encoding="utf-8")


def test_the_readme_lists_one_command_per_kind():
    kinds = [next(a for a in cmd if a.startswith("data=")) for cmd in readme_commands()]
    assert kinds == ["data=image_folder", "data=text_files", "data=text_table", "data=tsv_pairs"]


@pytest.mark.slow
@pytest.mark.parametrize("index", range(4))
def test_readme_own_data_command_runs_as_printed(tmp_path, monkeypatch, index):
    _files(tmp_path)
    monkeypatch.chdir(tmp_path)  # the README's relative paths
    args = readme_commands()[index]
    # one epoch: the command's wiring, not the recipe's length (char_lm's 5 epochs of a 2x512 LSTM took 23 s)
    metrics = run(make_cfg(tmp_path, [*args, "trainer.max_epochs=1", "callbacks.progress_bar=null"]))
    assert any(k.startswith("test/") for k in metrics), metrics
    assert (tmp_path / "run" / "checkpoints" / "last.ckpt").is_file()


def test_image_folder_uses_its_own_val_and_test_folders(tmp_path):
    _images(tmp_path, torch.Generator().manual_seed(0))
    dm = ImageDataModule("folder", folder=str(tmp_path / "my_images"), image_size=16)
    dm.setup()
    assert [len(dm.splits[s][1]) for s in ("train", "val", "test")] == [48, 12, 16]
    assert dm.classes == ["blue", "red"] and dm.dims["image_size"] == [16, 16] and dm.dims["num_classes"] == 2
    (tmp_path / "my_images" / "val").rename(tmp_path / "held")  # no val/: held out of train/
    dm = ImageDataModule("folder", folder=str(tmp_path / "my_images"), image_size=16, val_fraction=0.25)
    dm.setup()
    assert [len(dm.splits[s][1]) for s in ("train", "val", "test")] == [36, 12, 16]
