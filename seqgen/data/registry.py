"""Datasets by registry: each family (images, text classification, translation, language
modelling) has one LightningDataModule and a :class:`Readers` table of small readers, one per
dataset. A data module asks its reader what to download and how to read the splits; it never
switches on the dataset's name. Adding a dataset is one reader here-or-anywhere plus one YAML
file in ``conf/data/``:

    from seqgen.data.images import IMAGE_DATASETS

    @IMAGE_DATASETS.register("kmnist", shape=lambda dm: (1, 28, 28), num_classes=lambda dm: 10,
                             resources=lambda dm: kmnist_resources())
    def read_kmnist(dm):
        return {"train": (x_train, y_train), "test": (x_test, y_test)}, KMNIST_CLASSES
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar

import lightning as L
import torch

from seqgen.errors import ConfigError


def _nothing(dm: Any) -> list[Any]:
    return []


def _no_check(dm: Any) -> None:
    return None


def as_collated(batch: Any) -> Any:
    """A loader's ``collate_fn`` when the dataset makes whole batches itself (``DataLoader``'s default
    would walk the batch again, converting)."""
    return batch


@dataclass(frozen=True)
class Reader:
    """One dataset: ``read(dm)`` returns its splits (the family says in what form); ``resources(dm)``
    lists the files ``prepare_data`` fetches (published URLs and checksums); ``check(dm)`` raises a
    ConfigError for settings this dataset cannot work with, at construction; ``info`` holds cheap
    facts a family's ``dims`` reads without loading anything (e.g. image shape, class count)."""

    name: str
    read: Callable[[Any], Any]
    resources: Callable[[Any], list[Any]] = _nothing
    check: Callable[[Any], None] = _no_check
    info: dict[str, Callable[[Any], Any]] = field(default_factory=dict)


class Readers:
    """The readers of one family, by dataset name."""

    def __init__(self, family: str):
        self.family = family
        self._readers: dict[str, Reader] = {}

    def register(self, name: str, resources: Callable[[Any], list[Any]] = _nothing,
                 check: Callable[[Any], None] = _no_check, **info: Callable[[Any], Any]) -> Callable[[Callable], Callable]:
        """Decorator: register ``read`` (a function of the data module) as dataset ``name``."""

        def add(read: Callable[[Any], Any]) -> Callable[[Any], Any]:
            if name in self._readers:
                raise ValueError(f"{self.family} dataset {name!r} is registered twice")
            self._readers[name] = Reader(name, read, resources, check, dict(info))
            return read

        return add

    def get(self, name: str) -> Reader:
        if name not in self._readers:
            raise ConfigError(f"unknown {self.family} dataset {name!r}; available: {', '.join(self)}")
        return self._readers[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._readers)

    def __contains__(self, name: object) -> bool:
        return name in self._readers

    def __len__(self) -> int:
        return len(self._readers)


_HOST_LEAVES = frozenset({int, float, bool, str, bytes, type(None)})


def on_host(batch: Any, depth: int = 0) -> bool:
    """Whether ``batch`` is CPU tensors and plain values in lists, tuples and dicts only: a batch that
    Lightning's transfer to a CPU device would rebuild with the same tensors. Anything else (a
    tensor subclass, an object with its own ``to``, deep nesting) is not known here: False."""
    kind = type(batch)
    if kind in _HOST_LEAVES:
        return True
    if kind is torch.Tensor:
        return batch.is_cpu
    if depth >= 4:
        return False
    if kind is dict:
        batch = batch.values()
    elif kind is not list and kind is not tuple:
        return False
    for item in batch:
        if not on_host(item, depth + 1):
            return False
    return True


class SeqgenDataModule(L.LightningDataModule):
    """The base of seqgen's data modules: Lightning's, with a batch transfer that hands a batch of CPU
    tensors (in lists, tuples, dicts) to a CPU run as it is. Lightning's generic walk rebuilt it around
    the same tensors: 0.2 ms for a group of 41 micro-batches (steps per execution) against 13 µs for
    the check, once a group and once a validation batch. Anything else takes Lightning's path. (On the
    data module, not the LightningModule: Lightning uses a data module's override when it has one,
    and warns when only the model overrides it.)"""

    def transfer_batch_to_device(self, batch: Any, device: torch.device, dataloader_idx: int) -> Any:
        if device.type == "cpu" and on_host(batch):
            return batch
        return super().transfer_batch_to_device(batch, device, dataloader_idx)


class ReaderDataModule(SeqgenDataModule):
    """The base of each family's data module (Bolts' ``VisionDataModule`` + ``dataset_cls``
    pattern): ``READERS`` is the family's table, ``self.reader`` the dataset's reader, and
    ``prepare_data`` fetches what the reader lists (rank zero only, as Lightning calls it).
    Subclasses set ``data_dir`` and call :meth:`check_reader` once their settings are stored."""

    READERS: ClassVar[Readers]

    def __init__(self, dataset: str):
        super().__init__()
        self.reader = self.READERS.get(dataset)

    def check_reader(self) -> None:
        self.reader.check(self)

    def prepare_data(self) -> None:
        from seqgen.data.download import fetch

        for resource in self.reader.resources(self):
            fetch(resource, self.data_dir)

    def split_loader(self, split: str, train: bool) -> Any:
        """The DataLoader of ``split`` (``train``: shuffled for training). Families whose three loaders
        differ only in the split define this; the others override the three loaders themselves."""
        raise NotImplementedError(f"{type(self).__name__} defines neither split_loader nor its own loaders")

    def train_dataloader(self) -> Any:
        return self.split_loader("train", True)

    def val_dataloader(self) -> Any:
        return self.split_loader("val", False)

    def test_dataloader(self) -> Any:
        return self.split_loader("test", False)
