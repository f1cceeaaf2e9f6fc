"""Object detection: the digit canvases' exact boxes, the VOC and COCO readers on format-exact
archives, box-moving augmentations, the COCO-protocol mAP, YOLOv1 and FCOS fitting a canvas, the
transfer of a classifier's trunk, a detector learning on held-out canvases, and scripts/detect.py."""

from __future__ import annotations

import importlib.util

import fixtures
import pytest
import torch

from conftest import ROOT, make_cfg
from seqgen.data.detection import DetectionDataModule, digit_canvases, parse_xml
from seqgen.errors import ConfigError, DataError
from seqgen.models.detection_metrics import DetectionMAP
from seqgen.nets.detection import FCOS, YOLOv1, box_iou
from seqgen.nets.detection.transforms import HorizontalFlip, RandomZoomCrop


def _digits(n=40, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.zeros(n, 1, 28, 28)
    for i in range(n):  # a bar of ink at a random place inside each 28x28 digit
        r, c = torch.randint(4, 14, (2,), generator=g).tolist()
        x[i, 0, r : r + 10, c : c + 8] = 1.0
    return x, torch.arange(n) % 10


def test_canvas_boxes_are_exactly_the_ink_of_their_digits():
    x, y = _digits()
    images, targets = digit_canvases(x, y, 30, seed=3, size=64, count=(1, 3), digit_size=(16, 28), max_overlap=0.0,
                                     clutter=0, ink=0.3)
    assert images.dtype == torch.uint8 and images.shape == (30, 1, 64, 64)
    covered = torch.zeros(30, 64, 64, dtype=torch.bool)
    for i, t in enumerate(targets):
        assert len(t["boxes"]) >= 1 and t["labels"].max() < 10
        for x1, y1, x2, y2 in t["boxes"].long().tolist():
            ink = images[i, 0, y1:y2, x1:x2] > 0.3 * 255
            # ink touches every side of its box: the box is tight
            assert ink[0].any() and ink[-1].any() and ink[:, 0].any() and ink[:, -1].any()
            covered[i, y1:y2, x1:x2] = True
    assert not (images[:, 0] > 0.3 * 255)[~covered].any(), "ink outside every box"
    again = digit_canvases(x, y, 30, seed=3, size=64, count=(1, 3), digit_size=(16, 28), max_overlap=0.0, clutter=0)
    assert torch.equal(again[0], images) and all(torch.equal(a["boxes"], b["boxes"]) for a, b in zip(again[1], targets))


def test_canvas_overlap_is_bounded_and_settings_are_checked():
    x, y = _digits()
    _, targets = digit_canvases(x, y, 50, seed=1, count=(3, 4), max_overlap=0.2, clutter=3)
    for t in targets:
        iou = box_iou(t["boxes"], t["boxes"]) - torch.eye(len(t["boxes"]))
        assert iou.max() <= 0.2 + 1e-6
    with pytest.raises(ConfigError, match="unknown key data.canvas.sise"):
        DetectionDataModule(canvas={"sise": 64})
    with pytest.raises(ConfigError, match="digit_size"):
        DetectionDataModule(canvas={"digit_size": [40, 80]})


def test_canvases_of_scikit_learns_digits_use_held_out_digits_for_the_test():
    dm = DetectionDataModule(canvas={"source": "digits", "train": 20, "val": 5, "test": 30, "clutter": 0})
    dm.setup()
    assert dm.dims == {"num_classes": 10, "in_channels": 1, "image_size": 64}
    images = torch.stack([dm.splits["test"][i][0] for i in range(30)])
    assert images.shape == (30, 1, 64, 64) and images.max() <= 1.0
    boxes = torch.cat([dm.splits["test"][i][1]["boxes"] for i in range(30)])
    assert len(boxes) >= 30 and (boxes[:, 2:] > boxes[:, :2]).all() and boxes.min() >= 0 and boxes.max() <= 64
    again = DetectionDataModule(seed=7, canvas={"source": "digits", "train": 20, "val": 5, "test": 30, "clutter": 0})
    again.setup()  # another run's seed: another training set, the same test canvases
    assert torch.equal(again.splits["test"].images, dm.splits["test"].images)
    assert not torch.equal(again.splits["train"].images, dm.splits["train"].images)


def test_voc_reader_scales_boxes_and_keeps_difficult_as_crowd(tmp_path, monkeypatch, no_network):
    monkeypatch.setenv("SEQGEN_OFFLINE", "1")
    written = fixtures.write_voc(tmp_path, monkeypatch)
    dm = DetectionDataModule("voc", data_dir=str(tmp_path), image_size=32, batch_size=2)
    dm.setup()
    assert [len(dm.splits[s]) for s in ("train", "val", "test")] == [2, 1, 2]
    assert len(dm.classes) == 20 and dm.dims == {"num_classes": 20, "in_channels": 3, "image_size": 32}
    image, target = dm.splits["train"][0]
    assert image.shape == (3, 32, 32)
    w, h = written["000005"]["size"]
    objs = written["000005"]["objects"]
    expected = torch.tensor([[(o["x1"] - 1) * 32 / w, (o["y1"] - 1) * 32 / h, o["x2"] * 32 / w, o["y2"] * 32 / h]
                             for o in objs])
    torch.testing.assert_close(target["boxes"], expected)
    assert target["labels"].tolist() == [dm.classes.index(o["name"]) for o in objs]
    assert target["iscrowd"].tolist() == [o["difficult"] for o in objs]
    images, targets = next(iter(dm.train_dataloader()))
    assert images.shape == (2, 3, 32, 32) and len(targets) == 2


def test_voc_xml_with_entities_is_refused(tmp_path):
    p = tmp_path / "a.xml"
    p.write_text('<?xml version="1.0"?><!DOCTYPE a [<!ENTITY x "xx">]><annotation>&x;</annotation>')
    with pytest.raises(DataError, match="entity"):
        parse_xml(p)


def test_voc_archives_missing_offline_name_file_and_checksum(tmp_path, monkeypatch, no_network):
    monkeypatch.setenv("SEQGEN_OFFLINE", "1")
    with pytest.raises(DataError, match=r"VOCtrainval_06-Nov-2007\.tar(.|\n)*c52e279531787c972589f7e41ab4ae64"):
        DetectionDataModule("voc", data_dir=str(tmp_path)).setup()


def test_coco_reader_maps_sparse_ids_boxes_and_crowds(tmp_path, monkeypatch, no_network):
    monkeypatch.setenv("SEQGEN_OFFLINE", "1")
    written = fixtures.write_coco(tmp_path, monkeypatch)
    dm = DetectionDataModule("coco", data_dir=str(tmp_path), image_size=50)
    dm.setup()
    assert dm.classes == ["person", "car", "toothbrush"]
    assert [len(dm.splits[s]) for s in ("train", "val", "test")] == [3, 2, 2]
    first = written["train2017"]["images"][0]
    anns = [a for a in written["train2017"]["annotations"] if a["image_id"] == first["id"]]
    _, t = dm.splits["train"][0]
    sx, sy = 50 / first["width"], 50 / first["height"]
    expected = torch.tensor([[a["bbox"][0] * sx, a["bbox"][1] * sy, (a["bbox"][0] + 30.5) * sx, (a["bbox"][1] + 40) * sy]
                             for a in anns])
    torch.testing.assert_close(t["boxes"], expected)
    assert t["labels"].tolist() == [{1: 0, 3: 1, 90: 2}[a["category_id"]] for a in anns]
    assert t["iscrowd"].tolist() == [a["iscrowd"] for a in anns] and 1 in t["iscrowd"].tolist()
    assert len(dm.splits["train"][2][1]["boxes"]) == 0  # an image with no object is kept


def _square_image(box):
    img = torch.zeros(1, 1, 64, 64)
    x1, y1, x2, y2 = box
    img[0, 0, y1:y2, x1:x2] = 1.0
    return img, [{"boxes": torch.tensor([box], dtype=torch.float32), "labels": torch.tensor([1])}]


def _extent(img):
    rows = torch.nonzero((img[0, 0] > 0.5).any(1)).view(-1)
    cols = torch.nonzero((img[0, 0] > 0.5).any(0)).view(-1)
    return [int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1]


def test_flip_and_zoom_crop_move_the_boxes_with_the_pixels():
    img, t = _square_image([10, 20, 30, 44])
    flip = HorizontalFlip(p=1.0).train()
    out, tt = flip(img, t)
    assert _extent(out) == tt[0]["boxes"][0].long().tolist() == [34, 20, 54, 44]
    crop = RandomZoomCrop(min_scale=0.6, p=1.0, min_visible=0.0).train()
    for seed in range(5):
        torch.manual_seed(seed)
        out, tt = crop(*_square_image([20, 20, 40, 40]))
        if len(tt[0]["boxes"]):
            box = tt[0]["boxes"][0]
            assert (torch.tensor(_extent(out), dtype=torch.float32) - box).abs().max() <= 1.0
    assert crop.eval()(img, t)[0] is img  # evaluation: untouched


def test_map_is_coco_average_precision():
    m = DetectionMAP(3)
    gt = [{"boxes": torch.tensor([[0.0, 0, 10, 10], [20, 20, 40, 40]]), "labels": torch.tensor([0, 1])}]
    m.update([{"boxes": gt[0]["boxes"], "scores": torch.tensor([0.9, 0.8]), "labels": torch.tensor([0, 1])}], gt)
    r = m.compute()
    assert r["map"] == 1.0 and r["map_per_class"].tolist() == [1.0, 1.0, -1.0]
    m.reset()  # a false positive scored above the true one: precision 1/2 at full recall -> AP 0.5
    m.update([{"boxes": torch.tensor([[0.0, 0, 10, 10], [50, 50, 60, 60]]), "scores": torch.tensor([0.9, 0.95]),
               "labels": torch.tensor([0, 0])}], [{"boxes": torch.tensor([[0.0, 0, 10, 10]]), "labels": torch.tensor([0])}])
    assert m.compute()["map_50"].item() == pytest.approx(0.5, abs=0.01)
    m.reset()  # a box at IoU 0.6: matches at 0.5, 0.55 and 0.6 (IoU >= threshold), misses from 0.65 up -> 3/10
    m.update([{"boxes": torch.tensor([[0.0, 0, 10, 6]]), "scores": torch.tensor([0.9]), "labels": torch.tensor([0])}],
             [{"boxes": torch.tensor([[0.0, 0, 10, 10]]), "labels": torch.tensor([0])}])
    r = m.compute()
    assert r["map_50"] == 1.0 and r["map_75"] == 0.0 and r["map"].item() == pytest.approx(0.3, abs=1e-6)
    m.reset()  # a crowd (VOC: difficult) object is not counted as missed
    m.update([{"boxes": torch.zeros(0, 4), "scores": torch.zeros(0), "labels": torch.zeros(0, dtype=torch.long)}],
             [{"boxes": torch.tensor([[0.0, 0, 10, 10], [20, 20, 30, 30]]), "labels": torch.tensor([0, 0]),
               "iscrowd": torch.tensor([1, 0])}])
    m.update([{"boxes": torch.tensor([[0.0, 0, 10, 10]]), "scores": torch.tensor([0.9]), "labels": torch.tensor([0])}],
             [{"boxes": torch.tensor([[0.0, 0, 10, 10]]), "labels": torch.tensor([0]), "iscrowd": torch.tensor([0])}])
    assert m.compute()["map_50"].item() == pytest.approx(0.5, abs=0.01)  # 1 of 2 countable objects found


TORCHVISION = importlib.util.find_spec("torchvision") is not None


@pytest.mark.skipif(not TORCHVISION, reason="torchmetrics' MeanAveragePrecision needs torchvision (optional extra)")
def test_map_equals_torchmetrics_where_torchvision_loads():
    from torchmetrics.detection import MeanAveragePrecision

    g = torch.Generator().manual_seed(0)
    preds, targets = [], []
    for _ in range(20):
        gt = torch.rand(3, 2, generator=g) * 50
        gtb = torch.cat([gt, gt + 10 + torch.rand(3, 2, generator=g) * 20], 1)
        noise = torch.randn(3, 4, generator=g) * 3
        preds.append({"boxes": gtb + noise, "scores": torch.rand(3, generator=g), "labels": torch.randint(0, 3, (3,), generator=g)})
        targets.append({"boxes": gtb, "labels": torch.randint(0, 3, (3,), generator=g)})
    ours, theirs = DetectionMAP(3), MeanAveragePrecision(backend="faster_coco_eval")
    ours.update(preds, targets)
    theirs.update(preds, targets)
    a, b = ours.compute(), theirs.compute()
    for k in ("map", "map_50", "map_75"):
        assert a[k].item() == pytest.approx(b[k].item(), abs=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("net_cls,extra", [(YOLOv1, {"grid": 8}), (FCOS, {"pool": 2, "head_channels": 64})])
def test_detector_fits_one_canvas(net_cls, extra):
    """Both heads, their losses and decoding agree: 150 steps on one canvas find its digits again."""
    x, y = _digits(seed=1)
    images, targets = digit_canvases(x, y, 2, seed=0, count=(2, 3), max_overlap=0.0, clutter=0)
    torch.manual_seed(0)
    net = net_cls(num_classes=10, in_channels=1, image_size=64, backbone="lenet_modern", **extra)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    batch = images.float() / 255
    for _ in range(150):
        loss = net.loss(net(batch), targets)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    net.eval()
    m = DetectionMAP(10)
    m.update(net.predict(net(batch)), targets)
    assert m.compute()["map_50"] > 0.9


@pytest.mark.parametrize("spec", [{"_target_": "seqgen.nets.detection.FCOS", "backbone": "lenet_modern", "head_channels": 16,
                                   "pool": 2},
                                  {"_target_": "seqgen.nets.detection.YOLOv1", "backbone": "lenet_modern", "grid": 8}])
def test_channels_last_detector_computes_what_the_nchw_one_does(spec):
    """``channels_last``: the same weights give the same outputs (what decoding reads), losses and
    gradients in NHWC as in NCHW (within float error: other kernels), and a state dict loads into either
    layout."""
    from seqgen.models import Detector

    x, y = _digits(seed=2)
    images, targets = digit_canvases(x, y, 4, seed=3, count=(1, 2), clutter=0)
    batch = images.float() / 255
    torch.manual_seed(0)
    nchw = Detector(dict(spec), num_classes=10, in_channels=1, image_size=64)
    nhwc = Detector(dict(spec), num_classes=10, in_channels=1, image_size=64, channels_last=True)
    nhwc.load_state_dict(nchw.state_dict())
    assert any(p.dim() == 4 and p.is_contiguous(memory_format=torch.channels_last) and not p.is_contiguous()
               for p in nhwc.net.parameters())
    losses = [m.net.loss(m(batch), targets) for m in (nchw, nhwc)]
    for k in losses[0]:
        assert torch.allclose(losses[0][k], losses[1][k], rtol=1e-4, atol=1e-5), k
    for loss in losses:
        loss["loss"].backward()
    for (name, a), b in zip(nchw.net.named_parameters(), nhwc.net.parameters()):
        assert torch.allclose(a.grad, b.grad, rtol=1e-3, atol=1e-5), name
    for m in (nchw, nhwc):
        m.eval()
    with torch.no_grad():
        raw = [m(batch) for m in (nchw, nhwc)]  # what decoding reads (detections themselves: NMS near-ties)
    for k, a in (raw[0].items() if isinstance(raw[0], dict) else enumerate([raw[0]])):
        b = raw[1][k] if isinstance(raw[1], dict) else raw[1]
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-5), k
    nchw.load_state_dict(nhwc.state_dict())  # and back


def test_detector_backbone_starts_from_a_classifier_run():
    from seqgen.models import Classifier, Detector

    clf = Classifier({"_target_": "seqgen.nets.vision.build_net", "name": "lenet_modern"}, num_classes=10,
                     in_channels=1, image_size=28)
    det = Detector({"_target_": "seqgen.nets.detection.FCOS", "backbone": "lenet_modern", "head_channels": 16},
                   num_classes=10, in_channels=1, image_size=64)
    loaded = det.load_backbone_state(clf.state_dict(), "clf")
    assert loaded == sorted(f"backbone.{k[len('net.'):]}" for k in clf.state_dict() if k.startswith("net.features."))
    for k in loaded:
        assert torch.equal(det.net.state_dict()[k], clf.state_dict()["net." + k[len("backbone."):]])


@pytest.mark.slow
@pytest.mark.learning
def test_fcos_learns_to_find_digits_on_held_out_canvases(tmp_path, learn_seed, lesson):
    """The digits_detect_fcos recipe, scaled down (48 px canvases of 1-2 digits, 1,600 training
    canvases, 8 epochs): mAP@0.5 on 300 canvases of digits never seen in training."""
    from seqgen.train import run

    cfg = make_cfg(tmp_path, [
        "task=digits_detect_fcos", f"seed={learn_seed}", "logger=none", "callbacks.progress_bar=null",
        "data.canvas.size=48", "data.canvas.digits=[1,2]", "data.canvas.digit_size=[16,24]", "data.canvas.clutter=0",
        "data.canvas.train=1600", "data.canvas.val=200", "data.canvas.test=300", "trainer.max_epochs=8",
        "model.net.head_channels=32", "model.net.head_convs=1", "model.optimizer.lr=0.003", "model.scheduler.name=none"])
    metrics = run(cfg)
    lesson("test mAP@0.5 on held-out canvases (untrained: ~0)", metrics["test/map_50"], ">", 0.5)
    assert sorted(p.name for p in (tmp_path / "run" / "samples").glob("detections_*.png"))


@pytest.mark.slow
def test_detect_script_draws_and_lists_the_boxes(tmp_path, capsys):
    """scripts/detect.py on a detector checkpoint and a PNG canvas."""
    import importlib.util as iu

    from PIL import Image

    from seqgen.train import run

    run(make_cfg(tmp_path / "train", ["task=digits_detect_fcos", "logger=none", "callbacks.progress_bar=null",
                                      "data.canvas.train=64", "data.canvas.val=16", "data.canvas.test=16",
                                      "trainer.max_epochs=1", "model.net.head_channels=16"]))
    x, y = _digits()
    images, _ = digit_canvases(x, y, 1, seed=5)
    Image.fromarray(images[0, 0].numpy(), mode="L").save(tmp_path / "canvas.png")
    spec = iu.spec_from_file_location("detect_script", ROOT / "scripts" / "detect.py")
    script = iu.module_from_spec(spec)
    spec.loader.exec_module(script)
    out = tmp_path / "boxes.png"
    assert script.main([f"ckpt={tmp_path / 'train' / 'run'}", f"image={tmp_path / 'canvas.png'}", "score_threshold=0.0",
                        f"out={out}"]) == 0
    printed = capsys.readouterr().out
    assert "detections; saved to" in printed and printed.count("\t") >= 2
    assert Image.open(out).size == (256, 256)  # a 64 px canvas drawn 4x
    assert script.main([f"ckpt={tmp_path / 'train' / 'run'}", f"image={tmp_path / 'nothing.png'}"]) == 2
    assert "not a readable image" in capsys.readouterr().err
    other = tmp_path / "classifier.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": {}, "seqgen": {"model_class": "Classifier"}}, other)
    assert script.main([f"ckpt={other}", f"image={tmp_path / 'canvas.png'}"]) == 2
    assert "not a seqgen detector checkpoint (model: Classifier)" in capsys.readouterr().err
    assert script.main([f"ckpt={other}", f"image={tmp_path / 'canvas.png'}", "threshold=0.3"]) == 2
    assert "unknown argument 'threshold'" in capsys.readouterr().err


@pytest.mark.parametrize("name,channels,size,expected", [
    ("lenet_modern", 1, 64, ((120, 16, 16), 4.0, 14)),   # unpadded 5x5 convolutions: padded back to tile the image
    ("resnet18", 3, 64, ((512, 8, 8), 8.0, 0)),          # CIFAR stem, stride 8
    ("resnet18", 3, 448, ((512, 14, 14), 32.0, 0)),      # ImageNet stem, stride 32
    ("squeezenet1_1", 3, 128, ((512, 8, 8), 16.0, 8)),
])
def test_trunk_shape_stride_and_padding(name, channels, size, expected):
    from seqgen.nets.detection import build_trunk

    trunk, shape, stride = build_trunk(name, channels, size)
    assert (shape, stride, trunk.pad) == expected
    with torch.no_grad():
        assert tuple(trunk.eval()(torch.zeros(1, channels, size, size)).shape[1:]) == shape
