"""Object detection in plain torch: box operations, a catalogue backbone's trunk, YOLOv1 and FCOS.

Each detector maps images (N, C, H, W) to raw outputs, has ``loss(raw, targets)`` (targets: one
``{"boxes": (n, 4) xyxy pixels, "labels": (n,)}`` per image) returning a dict with ``loss``, and
``predict(raw, score_threshold, nms_iou, max_detections)`` returning one ``{"boxes", "scores",
"labels"}`` per image.
"""

from seqgen.nets.detection.backbone import Trunk, build_trunk
from seqgen.nets.detection.boxes import (
    anchor_grid,
    batched_nms,
    box_area,
    box_iou,
    cxcywh_to_xyxy,
    decode_boxes,
    encode_boxes,
    generalized_box_iou,
    grid_centers,
    nms,
    xywh_to_xyxy,
    xyxy_to_cxcywh,
)
from seqgen.nets.detection.fcos import FCOS, sigmoid_focal_loss
from seqgen.nets.detection.yolo import YOLOv1

__all__ = ["FCOS", "Trunk", "YOLOv1", "anchor_grid", "batched_nms", "box_area", "box_iou", "build_trunk",
           "cxcywh_to_xyxy", "decode_boxes", "encode_boxes", "generalized_box_iou", "grid_centers", "nms",
           "sigmoid_focal_loss", "xywh_to_xyxy", "xyxy_to_cxcywh"]
