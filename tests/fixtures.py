"""Small files in exactly the original formats of datasets that cannot be downloaded here.

The loaders verify published checksums; these fixtures are not the published files, so the
tests point the checksum tables at the fixtures' own hashes (``monkeypatch``) and exercise
everything else for real: paths, archive layout, parsing.
"""

from __future__ import annotations

import gzip
import hashlib
import random
import shutil
import zipfile
from pathlib import Path

from conftest import shared_data_dir
from seqgen.data import corpora

WORDS = ("the a of to in and is was for on that with as by at from his it an were are which this be also "
         "first new city film his game season game song album team war town river station school").split()


def _sentences(n: int, seed: int, unk: bool = True) -> list[str]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        words = [rng.choice(WORDS) for _ in range(rng.randint(5, 18))]
        if unk and rng.random() < 0.3:
            words[rng.randrange(len(words))] = "<unk>"
        out.append(" ".join(words))
    return out


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def write_ptb(root: Path, monkeypatch) -> None:
    """ptb.{train,valid,test}.txt: one sentence per line, a leading space, <unk> for rare words."""
    d = root / "ptb"
    d.mkdir(parents=True, exist_ok=True)
    sums = {}
    for i, split in enumerate(("train", "valid", "test")):
        p = d / f"ptb.{split}.txt"
        p.write_text("".join(f" {s} \n" for s in _sentences(400 if split == "train" else 120, i)))
        sums[split] = md5(p)
    monkeypatch.setattr(corpora, "PTB_MD5", sums)


def write_wikitext(root: Path, monkeypatch) -> None:
    """wikitext-2-v1.zip with wikitext-2/wiki.{split}.tokens: headings, blank lines, @-@ splits."""
    d = root / "wikitext"
    d.mkdir(parents=True, exist_ok=True)
    table = dict(corpora.WIKITEXT)
    for variant, (zname, folder, ext, _) in corpora.WIKITEXT.items():
        zpath = d / zname
        with zipfile.ZipFile(zpath, "w") as zf:
            for i, split in enumerate(("train", "valid", "test")):
                lines = [" ", " = Valkyria Chronicles III = ", " "]
                for s in _sentences(300 if split == "train" else 100, 10 + i):
                    lines.append(" " + s.replace(" of ", " @-@ of ") + " . ")
                    lines.append(" ")
                zf.writestr(f"{folder}/wiki.{split}.{ext}", "\n".join(lines) + "\n")
        table[variant] = (zname, folder, ext, {"md5": md5(zpath)} if variant != "wikitext103_raw" else {"size": zpath.stat().st_size})
    monkeypatch.setattr(corpora, "WIKITEXT", table)


def write_multi30k(root: Path, monkeypatch) -> None:
    """multi30k/{train,val,test_2016_flickr}.{de,en,fr}.gz: the real files when available."""
    d = root / "multi30k"
    real = shared_data_dir()
    if real is not None and (real / "multi30k").is_dir():
        shutil.copytree(real / "multi30k", d, dirs_exist_ok=True)
        return
    d.mkdir(parents=True, exist_ok=True)
    sums = {}
    for i, (split, n) in enumerate((("train", 600), ("val", 100), ("test_2016_flickr", 100))):
        for j, lang in enumerate(("de", "en", "fr")):
            p = d / f"{split}.{lang}.gz"
            # a stable seed per file (hash() of a string differs per process and xdist worker)
            lines = _sentences(n, 100 + 10 * i + j, unk=False)
            mark = {"de": lambda w: w + "en", "en": lambda w: w, "fr": lambda w: "l'" + w}[lang]  # tell the languages apart
            lines = [" ".join(mark(w) for w in ln.split()) for ln in lines]
            p.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
            sums[p.name] = md5(p)
    monkeypatch.setattr(corpora, "MULTI30K_MD5", sums)


def idx_bytes(array, magic: int) -> bytes:
    """An IDX file: magic (2051 images / 2049 labels), big-endian dims, uint8 data."""
    import struct

    import torch

    t = torch.as_tensor(array, dtype=torch.uint8)
    return struct.pack(">I", magic) + struct.pack(f">{t.dim()}I", *t.shape) + t.numpy().tobytes()


def write_idx_dataset(root: Path, name: str, monkeypatch, n_train: int = 300, n_test: int = 100) -> None:
    """MNIST-layout IDX .gz files whose images encode their label (a learnable fixture)."""
    import torch

    from seqgen.data import images

    d = root / name
    d.mkdir(parents=True, exist_ok=True)
    gen = torch.Generator().manual_seed(0)
    sums = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        y = torch.arange(n) % 10
        x = (torch.rand(n, 28, 28, generator=gen) * 60).to(torch.uint8)
        for i in range(n):
            x[i, 2 * int(y[i]) : 2 * int(y[i]) + 4, 4:24] = 255
        for kind, arr, magic in (("images-idx3", x, 2051), ("labels-idx1", y, 2049)):
            p = d / f"{prefix}-{kind}-ubyte.gz"
            p.write_bytes(gzip.compress(idx_bytes(arr, magic)))
            sums[p.name] = md5(p)
    table = dict(images.IDX_MD5)
    table[name] = sums
    monkeypatch.setattr(images, "IDX_MD5", table)


def write_cifar(root: Path, name: str, monkeypatch, per_batch: int = 20) -> Path:
    """cifar-10-python.tar.gz / cifar-100-python.tar.gz: the python-pickle layout, dicts with
    bytes keys (b'data' uint8 (N, 3072), b'labels' or b'fine_labels'), plus the meta file."""
    import io
    import pickle
    import tarfile

    import numpy as np

    from seqgen.data import images

    archive, _, folder, train_files, test_file, label_key, meta_file, names_key = images.CIFAR[name]
    classes = 10 if name == "cifar10" else 100
    rng = np.random.default_rng(0)
    d = root / name
    d.mkdir(parents=True, exist_ok=True)
    tpath = d / archive
    with tarfile.open(tpath, "w:gz") as tf:
        def add(member: str, obj) -> None:
            data = pickle.dumps(obj, protocol=2)
            info = tarfile.TarInfo(f"{folder}/{member}")
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))

        for fname in [*train_files, test_file]:
            labels = [int(v) for v in rng.integers(0, classes, per_batch)]
            img = rng.integers(0, 80, (per_batch, 3, 32, 32), dtype=np.uint8)
            for i, lab in enumerate(labels):  # a learnable mark: a bright row at a label-dependent height
                img[i, lab % 3, (lab * 3) % 32, :] = 255
            add(fname, {b"batch_label": fname.encode(), label_key: labels, b"data": img.reshape(per_batch, 3072),
                        b"filenames": [f"{i}.png".encode() for i in range(per_batch)]})
        add(meta_file, {names_key: [f"class{i}".encode() for i in range(classes)], b"num_cases_per_batch": per_batch})
    table = dict(images.CIFAR)
    table[name] = (archive, md5(tpath), *images.CIFAR[name][2:])
    monkeypatch.setattr(images, "CIFAR", table)
    return tpath


def write_ag_news(root: Path, monkeypatch, n: int = 80) -> None:
    """ag_news/{train,test}.csv: ``"class","title","description"``, every field quoted, classes 1-4,
    ``\\`` for line breaks inside descriptions, as in Zhang et al.'s files."""
    import csv

    from seqgen.data import text_classification as tc

    d = root / "ag_news"
    d.mkdir(parents=True, exist_ok=True)
    sums = {}
    topics = {1: "war election minister", 2: "season game team", 3: "stocks market company", 4: "software internet space"}
    for split, count in (("train", n), ("test", n // 4)):
        rng = random.Random(split)
        p = d / f"{split}.csv"
        with open(p, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f, quoting=csv.QUOTE_ALL, lineterminator="\n")
            for i in range(count):
                c = i % 4 + 1
                words = topics[c].split()
                w.writerow([str(c), f"{rng.choice(words).title()} news, \"quoted\" ({i})",
                            " ".join(rng.choice(words + ["the", "a", "of"]) for _ in range(12)) + "\\ more text"])
        sums[split] = md5(p)
    monkeypatch.setattr(tc, "AG_NEWS_MD5", sums)


def write_sst2(root: Path, monkeypatch, n: int = 60) -> None:
    """sst2/SST-2.zip holding SST-2/{train,dev,test}.tsv (``sentence\\tlabel`` header; test unlabelled)."""
    from seqgen.data import text_classification as tc

    d = root / "sst2"
    d.mkdir(parents=True, exist_ok=True)
    zpath = d / "SST-2.zip"
    good, bad = "a moving , funny and wise film".split(), "a dull , tedious and empty mess".split()
    rng = random.Random(2)

    def rows(count: int) -> str:
        out = ["sentence\tlabel"]
        for i in range(count):
            pool = good if i % 2 else bad
            out.append(" ".join(rng.choice(pool) for _ in range(rng.randint(2, 9))) + f" \t{i % 2}")
        return "\n".join(out) + "\n"

    with zipfile.ZipFile(zpath, "w") as zf:
        zf.writestr("SST-2/train.tsv", rows(n))
        zf.writestr("SST-2/dev.tsv", rows(n // 3))
        zf.writestr("SST-2/test.tsv", "index\tsentence\n0\ta film\n")
    monkeypatch.setattr(tc, "SST2", tc.Resource(tc.SST2.filename, tc.SST2.urls, md5=md5(zpath)))


def write_imdb(root: Path, monkeypatch, n: int = 20) -> None:
    """imdb/aclImdb_v1.tar.gz with aclImdb/{train,test}/{neg,pos}/<id>_<rating>.txt (and <br /> tags)."""
    import io
    import tarfile

    from seqgen.data import text_classification as tc

    d = root / "imdb"
    d.mkdir(parents=True, exist_ok=True)
    tpath = d / "aclImdb_v1.tar.gz"
    rng = random.Random(3)
    with tarfile.open(tpath, "w:gz") as tf:
        for split in ("train", "test"):
            for label, words in (("neg", "awful boring waste worst"), ("pos", "great wonderful loved best")):
                for i in range(n):
                    text = " ".join(rng.choice(words.split() + ["the", "movie", "was"]) for _ in range(30))
                    data = (text[:40] + "<br /><br />" + text[40:]).encode()
                    info = tarfile.TarInfo(f"aclImdb/{split}/{label}/{i}_{rng.randint(1, 10)}.txt")
                    info.size = len(data)
                    tf.addfile(info, io.BytesIO(data))
    monkeypatch.setattr(tc, "IMDB", tc.Resource(tc.IMDB.filename, tc.IMDB.urls, md5=md5(tpath)))


def write_all(root: Path, monkeypatch) -> Path:
    write_ag_news(root, monkeypatch)
    write_sst2(root, monkeypatch)
    write_imdb(root, monkeypatch)
    write_cifar(root, "cifar10", monkeypatch)
    write_cifar(root, "cifar100", monkeypatch)
    write_idx_dataset(root, "mnist", monkeypatch)
    write_idx_dataset(root, "fashion_mnist", monkeypatch)
    write_ptb(root, monkeypatch)
    write_wikitext(root, monkeypatch)
    write_multi30k(root, monkeypatch)
    write_planetoid(root, "cora")
    write_voc(root, monkeypatch)
    write_coco(root, monkeypatch)
    return root


def write_planetoid(root: Path, name: str = "cora", nodes: int = 2708, features: int = 1433, classes: int = 7,
                    train: int = 140, missing_test: int = 0, seed: int = 0) -> dict:
    """ind.<name>.{x,tx,allx,y,ty,ally,graph,test.index} as the Planetoid repository publishes them:
    pickles (protocol 2) of SciPy CSR feature matrices, numpy one-hot label arrays and a
    defaultdict(list) adjacency, and one test node index per line in shuffled order. The last
    1,000 nodes are the test nodes; ``missing_test`` of them are left out of tx/ty/test.index
    (CiteSeer's isolated test nodes). Returns what was written, as dense arrays by node."""
    import collections
    import pickle

    import numpy as np
    import scipy.sparse as sp

    rng = np.random.default_rng(seed)
    d = root / "planetoid"
    d.mkdir(parents=True, exist_ok=True)
    x = (rng.random((nodes, features)) < 0.01).astype(np.float32)
    y = rng.integers(0, classes, nodes)
    onehot = np.eye(classes, dtype=np.int32)[y]
    n_all = nodes - 1000
    test = np.arange(n_all, nodes)
    missing = rng.choice(test, missing_test, replace=False) if missing_test else np.array([], dtype=int)
    test = np.setdiff1d(test, missing)
    shuffled = rng.permutation(test)
    graph = collections.defaultdict(list)
    for u, v in rng.integers(0, nodes, (3 * nodes, 2)):
        graph[int(u)].append(int(v))
    parts = {"x": sp.csr_matrix(x[:train]), "allx": sp.csr_matrix(x[:n_all]), "tx": sp.csr_matrix(x[shuffled]),
             "y": onehot[:train], "ally": onehot[:n_all], "ty": onehot[shuffled], "graph": graph}
    for part, obj in parts.items():
        (d / f"ind.{name}.{part}").write_bytes(pickle.dumps(obj, protocol=2))
    (d / f"ind.{name}.test.index").write_text("".join(f"{i}\n" for i in shuffled))
    return {"x": x, "y": y, "graph": graph, "test": test, "missing": missing}


def _jpeg(rng, w: int, h: int) -> bytes:
    import io

    import numpy as np
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(buf, format="JPEG")
    return buf.getvalue()


VOC_XML = """<annotation>
\t<folder>VOC2007</folder>
\t<filename>{id}.jpg</filename>
\t<source><database>The VOC2007 Database</database></source>
\t<size><width>{w}</width><height>{h}</height><depth>3</depth></size>
\t<segmented>0</segmented>
{objects}</annotation>
"""
VOC_OBJECT = """\t<object>
\t\t<name>{name}</name>
\t\t<pose>Unspecified</pose>
\t\t<truncated>0</truncated>
\t\t<difficult>{difficult}</difficult>
\t\t<bndbox><xmin>{x1}</xmin><ymin>{y1}</ymin><xmax>{x2}</xmax><ymax>{y2}</ymax></bndbox>
\t</object>
"""


def write_voc(root: Path, monkeypatch) -> dict:
    """VOCtrainval_06-Nov-2007.tar and VOCtest_06-Nov-2007.tar in the published layout
    (VOCdevkit/VOC2007/{Annotations,ImageSets/Main,JPEGImages}); returns the objects written per id."""
    import io
    import tarfile

    import numpy as np

    from seqgen.data import detection

    rng = np.random.default_rng(0)
    d = root / "voc"
    d.mkdir(parents=True, exist_ok=True)
    written, table = {}, dict(detection.VOC_ARCHIVES)
    sets = {"trainval": {"train": ["000005", "000007"], "val": ["000009"]}, "test": {"test": ["000001", "000002"]}}
    for part, (archive, _) in detection.VOC_ARCHIVES.items():
        path = d / archive
        with tarfile.open(path, "w") as tf:
            def add(name: str, data: bytes) -> None:
                info = tarfile.TarInfo(f"VOCdevkit/VOC2007/{name}")
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))

            for split, ids in sets[part].items():
                add(f"ImageSets/Main/{split}.txt", "".join(f"{i}\n" for i in ids).encode())
            add(f"ImageSets/Main/{part}.txt", "".join(f"{i}\n" for ids in sets[part].values() for i in ids).encode())
            for ids in sets[part].values():
                for i in ids:
                    w, h = int(rng.integers(300, 500)), int(rng.integers(200, 400))
                    objs = []
                    for k in range(int(rng.integers(1, 4))):
                        x1, y1 = int(rng.integers(1, w // 2)), int(rng.integers(1, h // 2))
                        objs.append({"name": detection.VOC_CLASSES[int(rng.integers(0, 20))], "difficult": int(k == 2),
                                     "x1": x1, "y1": y1, "x2": x1 + int(rng.integers(20, w // 2)),
                                     "y2": y1 + int(rng.integers(20, h // 2))})
                    written[i] = {"size": (w, h), "objects": objs}
                    add(f"Annotations/{i}.xml", VOC_XML.format(id=i, w=w, h=h, objects="".join(
                        VOC_OBJECT.format(**o) for o in objs)).encode())
                    add(f"JPEGImages/{i}.jpg", _jpeg(rng, w, h))
        table[part] = (archive, md5(path))
    monkeypatch.setattr(detection, "VOC_ARCHIVES", table)
    return written


def write_coco(root: Path, monkeypatch) -> dict:
    """annotations_trainval2017.zip (annotations/instances_{train,val}2017.json), train2017.zip and
    val2017.zip as published; categories with COCO's sparse ids; a crowd region; an image with no object."""
    import json

    import numpy as np

    from seqgen.data import detection

    rng = np.random.default_rng(1)
    d = root / "coco"
    d.mkdir(parents=True, exist_ok=True)
    cats = [{"id": i, "name": n, "supercategory": "x"} for i, n in ((1, "person"), (3, "car"), (90, "toothbrush"))]
    instances, sums = {}, {}
    ann_id = 1
    for split, n in (("train2017", 3), ("val2017", 2)):
        images, anns = [], []
        with zipfile.ZipFile(d / f"{split}.zip", "w") as zf:
            for k in range(n):
                image_id = 1000 * (split == "val2017") + 10 + k
                w, h = int(rng.integers(200, 400)), int(rng.integers(200, 400))
                name = f"{image_id:012d}.jpg"
                zf.writestr(f"{split}/{name}", _jpeg(rng, w, h))
                images.append({"id": image_id, "file_name": name, "width": w, "height": h})
                for j in range(0 if k == n - 1 else 2):  # the last image of a split has no object
                    x, y = float(rng.integers(0, w // 2)), float(rng.integers(0, h // 2))
                    anns.append({"id": ann_id, "image_id": image_id, "category_id": cats[(k + j) % 3]["id"],
                                 "bbox": [x, y, 30.5, 40.0], "area": 1220.0, "iscrowd": int(j == 1 and k == 0)})
                    ann_id += 1
        sums[split] = md5(d / f"{split}.zip")
        instances[split] = {"images": images, "annotations": anns, "categories": cats}
    with zipfile.ZipFile(d / "annotations_trainval2017.zip", "w") as zf:
        for split, data in instances.items():
            zf.writestr(f"annotations/instances_{split}.json", json.dumps(data))
    sums["annotations"] = md5(d / "annotations_trainval2017.zip")
    monkeypatch.setattr(detection, "COCO_FILES", {k: (v[0], sums[k], v[2]) for k, v in detection.COCO_FILES.items()})
    return instances
