"""Box operations against brute force (and torchvision.ops where it can be imported)."""

from __future__ import annotations

import importlib.util

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from seqgen.nets.detection import (
    anchor_grid,
    batched_nms,
    box_iou,
    decode_boxes,
    encode_boxes,
    generalized_box_iou,
    grid_centers,
    nms,
)
from seqgen.nets.detection.boxes import paired_giou, paired_iou


def random_boxes(n: int, seed: int, size: float = 100.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=g) * size
    wh = torch.rand(n, 2, generator=g) * size / 3 + 1
    return torch.cat([xy, xy + wh], 1)


def brute_iou(a: list[float], b: list[float]) -> float:
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union


def brute_nms(boxes: list[list[float]], scores: list[float], thr: float) -> list[int]:
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))  # ties: lower index first
    keep: list[int] = []
    for i in order:
        if all(brute_iou(boxes[i], boxes[k]) <= thr for k in keep):
            keep.append(i)
    return keep


def test_iou_of_identical_disjoint_and_contained_boxes():
    a = torch.tensor([[0.0, 0, 10, 10]])
    assert box_iou(a, a).item() == 1.0
    assert box_iou(a, torch.tensor([[20.0, 20, 30, 30]])).item() == 0.0
    assert box_iou(a, torch.tensor([[10.0, 0, 20, 10]])).item() == 0.0  # touching edges
    assert box_iou(a, torch.tensor([[2.0, 2, 7, 7]])).item() == pytest.approx(25 / 100)
    assert generalized_box_iou(a, a).item() == 1.0
    # disjoint: GIoU = 0 - (hull - union) / hull; hull 30x30 = 900, union 200
    assert generalized_box_iou(a, torch.tensor([[20.0, 20, 30, 30]])).item() == pytest.approx(-(900 - 200) / 900)


def test_iou_matrix_equals_brute_force():
    a, b = random_boxes(17, 0), random_boxes(11, 1)
    expected = torch.tensor([[brute_iou(x, y) for y in b.tolist()] for x in a.tolist()])
    torch.testing.assert_close(box_iou(a, b), expected)
    torch.testing.assert_close(paired_iou(a[:11], b), expected[:11].diagonal())
    torch.testing.assert_close(paired_giou(a[:11], b), generalized_box_iou(a[:11], b).diagonal())
    giou = generalized_box_iou(a, b)
    assert (giou <= box_iou(a, b) + 1e-6).all() and (giou >= -1).all()


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("thr", [0.3, 0.5, 0.7])
def test_nms_equals_brute_force_greedy_in_keep_order(seed, thr):
    boxes = random_boxes(60, seed, size=40.0)
    scores = torch.rand(60, generator=torch.Generator().manual_seed(seed + 100))
    assert nms(boxes, scores, thr).tolist() == brute_nms(boxes.tolist(), scores.tolist(), thr)


def test_nms_ties_keep_the_lower_index_first():
    boxes = torch.tensor([[0.0, 0, 10, 10], [50, 50, 60, 60], [0, 0, 10, 10.5], [50, 50, 60, 61]])
    scores = torch.tensor([0.5, 0.9, 0.5, 0.9])
    assert nms(boxes, scores, 0.5).tolist() == [1, 0]
    assert nms(boxes[:0], scores[:0], 0.5).tolist() == []


def test_batched_nms_suppresses_within_a_class_only():
    boxes = random_boxes(80, 3, size=30.0)
    scores = torch.rand(80, generator=torch.Generator().manual_seed(4))
    classes = torch.randint(0, 4, (80,), generator=torch.Generator().manual_seed(5))
    keep = batched_nms(boxes, scores, classes, 0.5)
    per_class = torch.cat([torch.nonzero(classes == c).view(-1)[nms(boxes[classes == c], scores[classes == c], 0.5)]
                           for c in range(4)])
    assert sorted(keep.tolist()) == sorted(per_class.tolist())
    assert (scores[keep].diff() <= 0).all()  # by decreasing score


@given(st.lists(st.tuples(st.floats(0, 200), st.floats(0, 200), st.floats(1, 100), st.floats(1, 100)),
                min_size=1, max_size=20),
       st.tuples(st.floats(0.1, 10), st.floats(0.1, 10), st.floats(0.1, 10), st.floats(0.1, 10)))
def test_encode_decode_round_trip(rows, weights):
    gt = torch.tensor([[x, y, x + w, y + h] for x, y, w, h in rows], dtype=torch.float64)
    anchors = gt.flip(0) * 0.9 + 3  # other boxes, other sizes
    back = decode_boxes(encode_boxes(gt, anchors, weights), anchors, weights, clamp=1e9)
    torch.testing.assert_close(back, gt, rtol=1e-6, atol=1e-6)


def test_grid_centres_and_anchors():
    c = grid_centers(2, 3, 8.0)
    assert c.tolist() == [[4, 4], [12, 4], [20, 4], [4, 12], [12, 12], [20, 12]]
    a = anchor_grid(2, 3, 8.0, sizes=(8, 16), ratios=(0.5, 1.0, 2.0))
    assert a.shape == (2 * 3 * 6, 4)
    wh = a[:6, 2:] - a[:6, :2]
    torch.testing.assert_close(wh[:, 0] * wh[:, 1], torch.tensor([64.0] * 3 + [256.0] * 3))
    torch.testing.assert_close(wh[:, 1] / wh[:, 0], torch.tensor([0.5, 1, 2] * 2))
    torch.testing.assert_close((a[:, :2] + a[:, 2:])[:6] / 2, torch.tensor([[4.0, 4]] * 6))


TORCHVISION = importlib.util.find_spec("torchvision") is not None


@pytest.mark.skipif(not TORCHVISION, reason="torchvision is an optional extra (seqgen[vision]); checked where installed")
def test_same_as_torchvision_ops():  # pragma: no cover - runs only where torchvision loads
    import torchvision.ops as ops

    a, b = random_boxes(30, 7), random_boxes(20, 8)
    torch.testing.assert_close(box_iou(a, b), ops.box_iou(a, b))
    torch.testing.assert_close(generalized_box_iou(a, b), ops.generalized_box_iou(a, b))
    scores = torch.rand(30, generator=torch.Generator().manual_seed(9))
    assert nms(a, scores, 0.4).tolist() == ops.nms(a, scores, 0.4).tolist()
    idx = torch.randint(0, 3, (30,), generator=torch.Generator().manual_seed(10))
    assert batched_nms(a, scores, idx, 0.4).tolist() == ops.batched_nms(a, scores, idx, 0.4).tolist()
