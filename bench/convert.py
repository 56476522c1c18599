"""Benchmark: how long ``convert`` takes on a transformer-sized model, and where the time goes.

A GPT-like stack of Linear layers (``--layers`` blocks of width ``--width``: qkv, projection and the 4x MLP; 12 x 768
gives 85 M generated weights) is converted with a 1% ring. Each phase is timed on its own, best of ``--repeat``:
``plan`` (options -> specs), ``tables`` (the element-wise wiring, compiled kernel or plain torch), ``first
generation`` (the fused gather of every weight), ``convert`` (the whole call, in a process where torch.compile's
import was already paid) and, once per process, the import of ``torch._dynamo`` that the first conversion pays
for keeping generation out of torch.compile (``bank._run_hooks_eagerly``). Target (issue 24): convert <= 2 s per
100 M generated weights. Prints figures and writes bench/results/convert.json, with the CPU model.

Usage: python bench/convert.py [--layers 12 --width 768 --threads 1 --repeat 3 --torch-tables]
"""
from __future__ import annotations

import argparse
import importlib
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))

from results_io import write_result  # noqa: E402

import modelring as mr  # noqa: E402
from modelring import elementwise, generate  # noqa: E402
from modelring.runfiles import machine_record  # noqa: E402


def gpt_like(layers: int, width: int) -> torch.nn.Sequential:
    """The weight shapes of a GPT block stack (qkv, projection, MLP up and down), no embeddings."""
    with torch.device("meta"):
        shapes = [(width, 3 * width), (width, width), (width, 4 * width), (4 * width, width)] * layers
    return torch.nn.Sequential(*[torch.nn.Linear(i, o, bias=False) for i, o in shapes])


def best_of(repeat: int, fn) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def dynamo_import_seconds() -> float:
    """Seconds a fresh process spends importing torch._dynamo (what the first conversion pays once)."""
    code = "import time, torch; t = time.perf_counter(); import torch._dynamo; print(time.perf_counter() - t)"
    return float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--layers", type=int, default=12)
    parser.add_argument("--width", type=int, default=768)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--torch-tables", action="store_true", help="time the plain-torch tables too (slow)")
    parser.add_argument("--out", default="bench/results/convert.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    importlib.import_module("torch._dynamo")  # paid here, once, so the timings below are convert's own

    def fresh():
        model = gpt_like(args.layers, args.width).to_empty(device="cpu")
        for p in model.parameters():
            torch.nn.init.normal_(p, std=0.02)
        return model

    model = fresh()
    generated = sum(p.numel() for p in model.parameters())
    spec = mr.plan_rings(model, 0.01)[0]
    results = {"generated": generated, "ring": spec.size, "threads": args.threads,
               "machine": machine_record({"train": {}})}
    results["plan_s"] = best_of(args.repeat, lambda: mr.plan_rings(model, 0.01))
    results["tables_s"] = best_of(args.repeat, lambda: elementwise.build_element_wiring(spec, torch.device("cpu")))
    if args.torch_tables:
        os.environ["MODELRING_KERNEL"] = "torch"
        results["tables_torch_s"] = best_of(1, lambda: elementwise.build_element_wiring(spec, torch.device("cpu")))
        del os.environ["MODELRING_KERNEL"]
    ring = generate.initial_ring(spec)
    gen = generate.RingGenerator(spec)
    gen.wiring(ring.device, ring.dtype)
    results["first_generation_s"] = best_of(args.repeat, lambda: (gen.clear(), gen.weights(ring)))
    gen = model = None  # free them before the conversions below

    def convert_once():
        m = fresh()
        start = time.perf_counter()
        mr.convert(m, 0.01)
        return time.perf_counter() - start
    results["convert_s"] = min(convert_once() for _ in range(args.repeat))
    results["convert_s_per_100M"] = results["convert_s"] * 1e8 / generated
    results["dynamo_import_once_s"] = dynamo_import_seconds()
    for key, value in results.items():
        print(f"{key}: {value:.3f}" if isinstance(value, float) else f"{key}: {value}")
    write_result(args.out, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
