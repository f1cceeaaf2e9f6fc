"""Detecting objects in an image with a trained detector checkpoint (used by ``scripts/detect.py``)."""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import torch

from seqgen.checkpoints import find_checkpoint, load_checkpoint, module_from_checkpoint
from seqgen.cli import parse_kv, write_output
from seqgen.errors import CheckpointError, ConfigError, DataError


@dataclass
class DetectArgs:
    ckpt: str = ""
    image: str = ""
    out: str | None = None  # default: <run dir>/samples/detect_<image name>.png
    score_threshold: float | None = None  # default: the model's (0.05 is for mAP; 0.3 suits a picture)
    device: str = "cpu"


def parse_args(argv: list[str]) -> DetectArgs:
    args = parse_kv(argv, DetectArgs)
    if not args.ckpt or not args.image:
        raise ConfigError("ckpt=<checkpoint file or run folder> and image=<image file> are required")
    if args.score_threshold is not None and not 0 <= args.score_threshold < 1:
        raise ConfigError(f"score_threshold must be in [0, 1), got {args.score_threshold}")
    return args


def load_detector(path: str, device: str = "cpu"):
    """``(model, info)`` from a seqgen detector checkpoint, loaded with weights_only=True."""
    from seqgen.models import Detector

    ckpt_path = find_checkpoint(path)
    ckpt = load_checkpoint(ckpt_path)
    info = ckpt.get("seqgen") or {}
    if info.get("model_class") != "Detector":
        raise CheckpointError(f"{ckpt_path} is not a seqgen detector checkpoint (model: "
                              f"{info.get('model_class', 'unknown')}); detect.py needs one written by a detection "
                              "task such as digits_detect_fcos")
    return module_from_checkpoint(Detector, ckpt, device), info


def detect(args: DetectArgs) -> tuple[list[tuple[str, float, list[float]]], Path]:
    """Run the detector on ``args.image`` (resized to the model's input, boxes mapped back to the
    image's pixels), draw the boxes on the image and save it; return the detections and the PNG's path."""
    from PIL import Image, UnidentifiedImageError

    from seqgen.nets.detection.draw import draw_boxes

    model, info = load_detector(args.ckpt, args.device)
    dims = info.get("dims", {})
    size, channels = int(dims.get("image_size", model.hparams.get("image_size") or 64)), int(dims.get("in_channels", 3))
    try:
        with Image.open(args.image) as im:
            im = im.convert("L" if channels == 1 else "RGB")
            w, h = im.size
            original = torch.frombuffer(bytearray(im.tobytes()), dtype=torch.uint8).view(h, w, channels)
            resized = im.resize((size, size), Image.BILINEAR)
            x = torch.frombuffer(bytearray(resized.tobytes()), dtype=torch.uint8).view(size, size, channels)
    except (UnidentifiedImageError, OSError) as e:
        raise DataError(f"{args.image}: not a readable image ({e})") from e
    x = x.permute(2, 0, 1)[None].float().div(255).to(model.device)
    if args.score_threshold is not None:
        model.score_threshold = args.score_threshold
    model.eval()
    pred = model.detect(x)[0]
    boxes = pred["boxes"].cpu() * torch.tensor([w / size, h / size] * 2)
    classes = info.get("classes") or [str(i) for i in range(model.num_classes)]
    found = [(classes[int(lab)], float(s), [round(v, 1) for v in b])
             for b, s, lab in zip(boxes.tolist(), pred["scores"].tolist(), pred["labels"].tolist())]
    scale = max(1, 256 // max(w, h))
    drawn = draw_boxes(original.permute(2, 0, 1).float() / 255, boxes, pred["labels"].cpu(), pred["scores"].cpu(),
                       classes, scale=scale)
    buf = io.BytesIO()
    Image.fromarray((drawn * 255).round().to(torch.uint8).permute(1, 2, 0).contiguous().numpy()).save(buf, format="PNG")
    if args.out:
        dest = Path(args.out)
    else:
        dest = find_checkpoint(args.ckpt).parent.parent / "samples" / f"detect_{Path(args.image).stem}.png"
    return found, write_output(dest, buf.getvalue())
