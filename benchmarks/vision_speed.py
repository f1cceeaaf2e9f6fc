#!/usr/bin/env python
"""Images/s of the CNN catalogue at 32 px, batch 128: training (forward + backward + SGD step)
and evaluation, fp32 and bf16 autocast, plus seqgen (Lightning) vs a plain PyTorch loop for
ResNet-18 on the same synthetic CIFAR-shaped batches.

    python benchmarks/vision_speed.py [--nets resnet18 vgg16_bn ...] [--steps 3] [--batch 128] [--channels-last]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from common import machine, make_cfg, table

from seqgen.callbacks import Throughput
from seqgen.nets.vision import NETS, build_net
from seqgen.train import run


def speed(name: str, batch: int, steps: int, bf16: bool, channels_last: bool) -> tuple[float, float]:
    torch.manual_seed(0)
    gray = name.startswith("lenet")
    net = build_net(name, num_classes=10, in_channels=1 if gray else 3, image_size=32)
    x = torch.randn(batch, 1 if gray else 3, 32, 32)
    y = torch.randint(0, 10, (batch,))
    if channels_last:
        net, x = net.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)

    def train_step():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = F.cross_entropy(net(x).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def timed(fn, n):
        fn()  # warm-up
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        return n * batch / (time.perf_counter() - t0)

    net.train()
    train = timed(train_step, steps)
    net.eval()

    def eval_step():
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            net(x)

    return train, timed(eval_step, steps)


def seqgen_vs_plain(batch: int, steps: int, precision: str) -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as tmp:
        cfg = make_cfg(Path(tmp) / "run", ["task=cifar10_resnet18", "data.dataset=synthetic", f"data.batch_size={batch}",
                                           f"trainer.max_steps={steps + 2}", "trainer.max_epochs=-1", "trainer.limit_val_batches=1",
                                           "trainer.num_sanity_val_steps=0", "test=false", "model.augment=[]",
                                           "model.scheduler.name=none", f"trainer.precision={precision}",
                                           "model.optimizer.nesterov=false", "model.optimizer.weight_decay=0.0"])
        timer = Throughput(warmup=2, log_rates=False)
        run(cfg, extra_callbacks=[timer])
        ours = timer.items_per_sec
    torch.manual_seed(0)
    net = build_net("resnet18", num_classes=10, in_channels=3, image_size=32)
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    x, y = torch.randn(batch, 3, 32, 32), torch.randint(0, 10, (batch,))
    net.train()
    bf16 = precision.startswith("bf16")
    t0 = None
    for i in range(steps + 2):
        if i == 2:
            t0 = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = F.cross_entropy(net(x).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    plain = steps * batch / (time.perf_counter() - t0)
    return plain, ours


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nets", nargs="+", default=[n for n in NETS if not n.startswith("vgg1") or n == "vgg16_bn"])
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--precisions", nargs="+", default=["fp32", "bf16"])
    ap.add_argument("--channels-last", action="store_true")
    ap.add_argument("--ratio-steps", type=int, default=8)
    args = ap.parse_args()
    rows = []
    for name in args.nets:
        row = [name]
        for prec in args.precisions:
            tr, ev = speed(name, args.batch, args.steps, prec == "bf16", args.channels_last)
            row += [round(tr, 1), round(ev, 1)]
        rows.append(row)
    header = ["net"] + [f"{p} {k} img/s" for p in args.precisions for k in ("train", "eval")]
    table(f"CNN catalogue at 32 px, batch {args.batch}{', channels_last' if args.channels_last else ''} ({machine()})", header, rows)
    ratio_rows = []
    for prec in ("32-true", "bf16-mixed"):
        plain, ours = seqgen_vs_plain(args.batch, args.ratio_steps, prec)
        ratio_rows.append(["resnet18", prec, round(plain, 1), round(ours, 1), round(ours / plain, 3)])
    table(f"ResNet-18 training, seqgen vs plain loop, synthetic 32 px batches of {args.batch}",
          ["net", "precision", "plain img/s", "seqgen img/s", "ratio"], ratio_rows)


if __name__ == "__main__":
    main()
