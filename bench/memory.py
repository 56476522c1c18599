"""Benchmark: peak training memory RPG vs dense, and gradient bytes DDP would all-reduce per step.

Each (model, dense|rpg) runs a few SGD steps in a fresh process and reports its peak resident set size
(``ru_maxrss``); the imported libraries' baseline is measured the same way with zero steps and subtracted.
Prints figures and writes bench/results/memory.json.

Usage: python bench/memory.py [--steps 3] [--only mlp12x1024_b16 ...]
"""
from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from results_io import write_result  # noqa: E402

CHILD = r"""
import resource, sys, torch
sys.path.insert(0, {bench!r})
import modelring as mr
from generation import cases, _prepare, _step
torch.set_num_threads(2)
case = next(c for c in cases(False) if c["name"] == {name!r})
x = torch.randn(case["input"])
y = torch.randint(0, 10, (case["input"][0],))
if {steps} > 0:
    model, opt = _prepare(case, {rpg}, {{}})
    for _ in range({steps}):
        _step(model, opt, x, y)
    counts = mr.count_params(model)
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, 4 * counts.dof, 4 * counts.virtual)
else:
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, 0, 0)
"""


def peak(name: str, rpg: bool, steps: int) -> tuple[int, int, int]:
    code = CHILD.format(bench=str(Path(__file__).parent), name=name, rpg=rpg, steps=steps)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    rss, grad_bytes, dense_grad_bytes = map(int, out.split())
    return rss, grad_bytes, dense_grad_bytes


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--only", nargs="*", help="run only these case names")
    parser.add_argument("--out", default="bench/results/memory.json")
    args = parser.parse_args(argv)
    rows = {}
    for name in args.only or ["resnet20_b128", "cifar_resnet18_b128", "mlp12x1024_b16", "transformer_b32"]:
        base = peak(name, False, 0)[0]
        dense, _, dense_grad = peak(name, False, args.steps)
        rpg, rpg_grad, _ = peak(name, True, args.steps)
        rows[name] = {"baseline_rss": base, "dense_peak_rss": dense, "rpg_peak_rss": rpg,
                      "peak_ratio_above_baseline": (rpg - base) / max(dense - base, 1),
                      "ddp_grad_bytes_per_step": rpg_grad, "dense_ddp_grad_bytes_per_step": dense_grad}
        r = rows[name]
        print(f"{name:>20}: peak above baseline dense {(dense - base) / 2**20:8.1f} MiB, rpg "
              f"{(rpg - base) / 2**20:8.1f} MiB (ratio {r['peak_ratio_above_baseline']:.2f}); DDP gradient "
              f"bytes/step {rpg_grad:,} vs dense {dense_grad:,}", flush=True)
    write_result(args.out, rows)
    return rows


if __name__ == "__main__":
    main()
