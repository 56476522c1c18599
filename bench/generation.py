"""Benchmark: training-step time RPG/dense, wiring bytes, checkpoint bytes. Prints figures, writes JSON.

Usage: python bench/generation.py [--quick] [--threads 2] [--block 1] [--repeat 1] [--only CASE ...]
       [--out bench/results/generation.json]

Dense and RPG steps are interleaved (dense, rpg, dense, rpg, ...) so machine noise hits both alike; the
reported time is the median over steps after warm-up. A step = zero_grad + forward + loss + backward + SGD
(momentum 0.9, weight decay 1e-4) step, exactly what a training loop does.
"""
from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

import modelring as mr
from results_io import write_result

PAPER_RING = 512 * 512 * 3 * 3  # the paper's ResNet-18 ring: one 512x512x3x3 conv


def mlp(depth: int = 12, width: int = 1024, classes: int = 10) -> nn.Module:
    """The generation-dominated case: many Linear layers, little compute per weight at small batch."""
    layers = [nn.Linear(width, width) if i % 2 == 0 else nn.ReLU() for i in range(2 * depth)]
    return nn.Sequential(*layers, nn.Linear(width, classes))


def transformer(width: int = 256, depth: int = 4, classes: int = 10) -> nn.Module:
    """A transformer encoder classifier over (batch, 64, width) token inputs, mean-pooled."""
    layer = nn.TransformerEncoderLayer(width, nhead=4, dim_feedforward=4 * width, dropout=0.0, batch_first=True)
    return nn.Sequential(nn.TransformerEncoder(layer, depth, enable_nested_tensor=False), _MeanTokens(),
                         nn.Linear(width, classes))


class _MeanTokens(nn.Module):
    def forward(self, x):
        return x.mean(1)


def cases(quick: bool) -> list[dict]:
    out = [dict(name="resnet20_b128", build=lambda: mr.create_model("resnet20"), ring=0.1,
                input=(128, 3, 32, 32), channels_last=True),
           dict(name="mlp12x1024_b16", build=mlp, ring=0.1, input=(16, 1024), channels_last=False),
           dict(name="transformer_b32", build=transformer, ring=0.1, input=(32, 64, 256), channels_last=False,
                include=[nn.Linear, "*.in_proj_weight"])]
    if not quick:
        out.insert(1, dict(name="cifar_resnet18_b128", build=lambda: mr.create_model("cifar_resnet18"),
                           ring=PAPER_RING, input=(128, 3, 32, 32), channels_last=True))
        # the official code's setting (ImageNet ResNet-18, the paper's ring), at 64 px so a step takes ~0.3 s here
        out.insert(2, dict(name="imagenet_resnet18_b32_64", build=lambda: mr.create_model("resnet18"),
                           ring=PAPER_RING, input=(32, 3, 64, 64), channels_last=True, classes=1000))
        # the same in the default memory format: generated weights are contiguous, so channels-last convolutions
        # convert them (and their gradients) every step, which dense weights stored channels-last do not pay
        out.insert(3, dict(name="imagenet_resnet18_b32_64_contiguous", build=lambda: mr.create_model("resnet18"),
                           ring=PAPER_RING, input=(32, 3, 64, 64), channels_last=False, classes=1000))
    return out


def _prepare(case: dict, rpg: bool, options: dict) -> tuple[nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(0)
    model = case["build"]()
    if rpg:
        mr.convert(model, case["ring"], **{"include": case.get("include"), **options})
    if case["channels_last"]:
        model = model.to(memory_format=torch.channels_last)
    return model, torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)


def _step(model, opt, x, y) -> float:
    start = time.perf_counter()
    opt.zero_grad(set_to_none=True)
    nn.functional.cross_entropy(model(x), y).backward()
    opt.step()
    return time.perf_counter() - start


def step_times(case: dict, steps: int, options: dict) -> dict:
    """Median step seconds for the dense and the RPG model, interleaved."""
    x = torch.randn(case["input"])
    if case["channels_last"]:
        x = x.to(memory_format=torch.channels_last)
    y = torch.randint(0, case.get("classes", 10), (case["input"][0],))
    models = {"dense": _prepare(case, False, options), "rpg": _prepare(case, True, options)}
    times = {k: [] for k in models}
    for i in range(steps + 2):
        for k, (model, opt) in models.items():
            t = _step(model, opt, x, y)
            if i >= 2:  # warm-up: allocator, wiring build, first-touch pages
                times[k].append(t)
    dense, rpg = statistics.median(times["dense"]), statistics.median(times["rpg"])
    counts = mr.count_params(models["rpg"][0])
    return {"dense_s": dense, "rpg_s": rpg, "ratio": rpg / dense, "generated": counts.generated,
            "ring": counts.ring, "dof_fraction": counts.dof_fraction,
            "held_bytes_per_virtual": counts.held_bytes_per_virtual,
            "measured_held_bytes_per_virtual": (counts.wiring_bytes + counts.workspace_bytes) / counts.generated}


def checkpoint_bytes(case: dict, options: dict) -> dict:
    """File sizes: converted model vs its materialized dense equivalent, and the DESIGN bound."""
    model, _ = _prepare(case, True, options)
    counts = mr.count_params(model)
    with tempfile.TemporaryDirectory() as tmp:
        rpg = mr.save(model, Path(tmp) / "rpg.safetensors").stat().st_size
        dense = mr.save(mr.materialize(model), Path(tmp) / "dense.safetensors").stat().st_size
    bound = 4 * (counts.ring + counts.free + counts.buffers) + 16 * 1024
    return {"rpg_bytes": rpg, "dense_bytes": dense, "ratio": rpg / dense, "bound_bytes": bound,
            "within_bound": rpg <= bound}


def recompute_mode(steps: int, options: dict) -> dict:
    """wiring="recompute": bytes kept (0) and its step-time cost on ResNet-20."""
    case = dict(cases(True)[0], name="resnet20_b128_recompute")
    row = step_times(case, steps, {**options, "wiring": "recompute"})
    return {"held_bytes_per_virtual": row["held_bytes_per_virtual"], "step_ratio": row["ratio"]}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small cases and few steps (smoke run)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=None, help="timed steps per model (default 8, quick 3)")
    parser.add_argument("--block", type=int, default=1, help="convert(block=...): 1 element-wise (default), >1 blocks")
    parser.add_argument("--only", nargs="*", help="run only these case names")
    parser.add_argument("--repeat", type=int, default=1,
                        help="independent step-time measurements per case (fresh models each); the ratio reported "
                             "is their median, every run is kept in ratio_runs")
    parser.add_argument("--out", default="bench/results/generation.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    steps = args.steps or (3 if args.quick else 8)
    options = {"block": args.block}
    result = {"torch": torch.__version__, "threads": args.threads, "machine": platform.machine(),
              "processor": platform.processor(), "block": args.block, "steps": steps, "repeat": args.repeat,
              "cases": {}}
    for case in cases(args.quick):
        if args.only and case["name"] not in args.only:
            continue
        runs = [step_times(case, steps, options) for _ in range(args.repeat)]
        row = dict(runs[0], ratio_runs=[r["ratio"] for r in runs],
                   **{k: statistics.median(r[k] for r in runs) for k in ("ratio", "dense_s", "rpg_s")})
        row["checkpoint"] = checkpoint_bytes(case, options)
        result["cases"][case["name"]] = row
        print(f"{case['name']:>22}: step dense {row['dense_s']*1e3:8.1f} ms  rpg {row['rpg_s']*1e3:8.1f} ms  "
              f"ratio {row['ratio']:.3f}  held {row['held_bytes_per_virtual']:.3f} B/virtual  "
              f"checkpoint {row['checkpoint']['rpg_bytes']:,} B vs dense {row['checkpoint']['dense_bytes']:,} B"
              f" (bound {'met' if row['checkpoint']['within_bound'] else 'MISSED'})", flush=True)
    result["recompute"] = recompute_mode(steps, options)
    print(f"recompute wiring (resnet20_b128): {result['recompute']['held_bytes_per_virtual']:.3f} B/virtual, "
          f"step ratio {result['recompute']['step_ratio']:.3f}")
    write_result(args.out, result)
    return result


if __name__ == "__main__":
    main()
