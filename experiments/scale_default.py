"""Experiment: which per-layer scale rule (and block size) to use by default in ``convert``.

RPG ResNet-20 (ring = 5% of the generated weights; stem and classifier free as in the paper unless noted) on a fixed Fashion-MNIST subset, short schedule, several
seeds; reports test accuracy per variant with mean and std. Writes docs/results/scale_default.{json,md}.

Usage: python experiments/scale_default.py [--root /usr/share/datasets/fashion-mnist] [--train 12000]
"""
from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

import modelring as mr
from modelring.data import read_idx
from modelring.io import write_atomic

PAPER = {"exclude": ["conv1.weight", "fc.*"]}  # the paper keeps the stem conv and the classifier free
VARIANTS = {
    "dense": None,
    "fan_in, block 16": dict(scale="fan_in", block=16, **PAPER),
    "fan_out, block 16": dict(scale="fan_out", block=16, **PAPER),
    "none, block 16": dict(scale=None, block=16, **PAPER),
    "fan_in, block 1": dict(scale="fan_in", block=1, **PAPER),
    "fan_in, block 64": dict(scale="fan_in", block=64, **PAPER),
    "fan_in, block 16, stem+fc generated too": dict(scale="fan_in", block=16),
    "fan_out, block 16, stem+fc generated too": dict(scale="fan_out", block=16),
    "none, block 16, stem+fc generated too": dict(scale=None, block=16),
}


def load_split(root: Path, split: str, limit: int) -> tuple[torch.Tensor, torch.Tensor]:
    images = read_idx(root / f"{split}-images-idx3-ubyte.gz")[:limit].float().div_(255)
    labels = read_idx(root / f"{split}-labels-idx1-ubyte.gz")[:limit].long()
    images = F.pad(images, (2, 2, 2, 2)).unsqueeze(1)  # 28x28 -> 32x32, one channel
    return (images - 0.286) / 0.353, labels


def run(variant: dict | None, seed: int, train, test, epochs: int, batch: int) -> float:
    torch.manual_seed(seed)
    model = mr.create_model("resnet20", in_chans=1)
    if variant is not None:
        mr.convert(model, 0.05, seed=seed, **variant)
    steps = epochs * math.ceil(len(train[0]) / batch)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4, nesterov=True)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.1, total_steps=steps, pct_start=0.15)
    generator = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(train[0]), generator=generator)
        for i in range(0, len(order), batch):
            idx = order[i:i + batch]
            opt.zero_grad()
            F.cross_entropy(model(train[0][idx]), train[1][idx]).backward()
            opt.step()
            sched.step()
    model.eval()
    with torch.no_grad():
        correct = sum((model(test[0][i:i + 500]).argmax(1) == test[1][i:i + 500]).sum().item()
                      for i in range(0, len(test[0]), 500))
    return correct / len(test[0])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path("/usr/share/datasets/fashion-mnist"))
    parser.add_argument("--train", type=int, default=12000)
    parser.add_argument("--test", type=int, default=2000)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--only", nargs="*", help="run only these variants (names as in VARIANTS)")
    parser.add_argument("--out", type=Path, default=Path("docs/results/scale_default"))
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    train, test = load_split(args.root, "train", args.train), load_split(args.root, "t10k", args.test)
    start = time.time()
    rows = {}
    for name, variant in VARIANTS.items():
        if args.only and name not in args.only:
            continue
        accs = [run(variant, seed, train, test, args.epochs, args.batch) for seed in args.seeds]
        rows[name] = {"acc": accs, "mean": statistics.mean(accs),
                      "std": statistics.stdev(accs) if len(accs) > 1 else 0.0}
        print(f"{name:>20}: {rows[name]['mean']:.4f} ± {rows[name]['std']:.4f}  {accs}", flush=True)
    wall = time.time() - start
    command = "python experiments/scale_default.py " + " ".join(argv if argv is not None else sys.argv[1:])
    result = {"command": command.strip(), "machine": f"{platform.machine()} {platform.processor()}, 2 threads",
              "torch": torch.__version__, "wall_s": wall, "args": {k: str(v) for k, v in vars(args).items()},
              "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(args.out.with_suffix(".json"), lambda t: Path(t).write_text(json.dumps(result, indent=1)))
    lines = ["# Default scale rule: RPG ResNet-20 (5% ring) on Fashion-MNIST",
             "", f"Command: `{result['command']}`  ", f"Machine: {result['machine']}, torch {torch.__version__}  ",
             f"Wall time: {wall:.0f} s; train {args.train} images, test {args.test}, {args.epochs} epoch(s), "
             f"seeds {args.seeds}", "", "| variant | test accuracy (mean ± std) | per seed |", "|---|---|---|"]
    lines += [f"| {k} | {r['mean']:.4f} ± {r['std']:.4f} | {', '.join(f'{a:.4f}' for a in r['acc'])} |"
              for k, r in rows.items()]
    write_atomic(args.out.with_suffix(".md"), lambda t: Path(t).write_text("\n".join(lines) + "\n"))


if __name__ == "__main__":
    main()
