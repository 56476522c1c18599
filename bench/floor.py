"""Benchmark: generation against its physical floor, a plain copy of the same bytes.

For each case the forward (all virtual weights from the ring, allocation included) and the backward (ring gradient
from all weight gradients, timed alone: its generation is made before the timer starts) are timed against
``torch.Tensor.copy_`` of T float32 values between two preallocated buffers. Copies
and generations are interleaved and each ratio is the median of per-round ratios, so the machine's drift (the
copy itself moves 2x on a shared host) hits both alike. Prints figures and writes bench/results/floor.json.

``--variants`` also times the ways of doing the element-wise forward gather that were tried (CIFAR ResNet-18,
the paper's ring), each against the same copy: ``torch.index_select`` with int64 and int32 indices, one-shot over
all layers and per layer, the plain-torch path of modelring (int16 tables decoded per layer), the compiled
kernel, and with ``--torch-compile`` a ``torch.compile``d gather (slow to compile: ~20 s per shape).

Usage: python bench/floor.py [--threads 2] [--rounds 15] [--repeat 5] [--variants] [--torch-compile]
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

import torch

import modelring as mr
from modelring import elementwise, kernels
from modelring.bank import get_state
from modelring.wiring import entries_and_signs
from results_io import write_result

PAPER_RING = 512 * 512 * 3 * 3


def _seconds(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def ratios_to_copy(functions: dict, total: int, rounds: int, before: dict | None = None) -> dict:
    """Median over rounds of time(fn) / time(copy of T float32), copies interleaved with every function;
    ``before[name]`` runs untimed before each call of ``functions[name]``."""
    before = before or {}
    src, dst = torch.randn(total), torch.empty(total)
    copy = lambda: dst.copy_(src)  # noqa: E731
    for name, fn in functions.items():  # warm-up: wiring, allocator, kernel build
        before.get(name, lambda: None)()
        fn()
    ratios, copies = {name: [] for name in functions}, []
    for _ in range(rounds):
        for name, fn in functions.items():
            before.get(name, lambda: None)()
            first, took, second = _seconds(copy), _seconds(fn), _seconds(copy)
            ratios[name].append(2 * took / (first + second))
            copies.append(first)
    out = {name: statistics.median(r) for name, r in ratios.items()}
    out["copy_ms"] = 1e3 * statistics.median(copies)
    return out


def measure(model_name: str, ring_size, block: int, rounds: int) -> dict:
    """Forward and backward of one ring's generation, as ratios to a copy of T float32 values."""
    model = mr.convert(mr.create_model(model_name), ring_size, block=block)
    state = get_state(model)
    gen, ring = state.generators[0], state.ring(0)
    grads = [torch.randn(s.shape) for s in gen.spec.segments]

    def forward():
        gen.clear()
        return gen.weights(ring)

    pending = []  # a generation made outside the timed region, for the backward to consume

    def backward():
        torch.autograd.backward(pending.pop(), grads)

    def generate_untimed():
        ring.grad = None
        pending.append(forward())

    r = ratios_to_copy({"forward": forward, "backward": backward}, gen.spec.total, rounds,
                       before={"backward": generate_untimed})
    return {"model": model_name, "virtual_weights": gen.spec.total, "ring": gen.spec.size, "block": block,
            "kernel": "compiled" if gen.spec.element_wise and kernels.usable(ring) else "torch",
            "copy_ms": r["copy_ms"], "forward_over_copy": r["forward"], "backward_over_copy": r["backward"],
            "held_bytes_per_virtual": mr.count_params(model).held_bytes_per_virtual}


def repeated(run, times: int) -> dict:
    """Median of ``times`` measurements for each ratio, with every measurement kept (``*_runs``)."""
    runs = [run() for _ in range(times)]
    row = dict(runs[0])
    for key in ("copy_ms", "forward_over_copy", "backward_over_copy"):
        row[key] = statistics.median(r[key] for r in runs)
        row[f"{key}_runs"] = [r[key] for r in runs]
    return row


def gather_variants(rounds: int, torch_compile: bool) -> dict:
    """The element-wise forward done several ways (CIFAR ResNet-18, paper ring), as ratios to a copy."""
    model = mr.convert(mr.create_model("cifar_resnet18"), PAPER_RING)
    state = get_state(model)
    gen, ring = state.generators[0], state.ring(0).detach()
    spec, wiring = gen.spec, gen.wiring(ring.device, ring.dtype)
    entries, negative = entries_and_signs(spec)
    signed = torch.cat([ring, -ring])  # the sign folded into the index: entry + N for a negated weight
    index64 = entries + spec.size * negative.long()
    index32 = index64.int()
    bounds = [(s.offset, s.offset + s.numel) for s in spec.segments]
    out = torch.empty(spec.total)
    outs = [torch.empty(s.shape) for s in spec.segments]
    functions = {
        "index_select_int64_one_shot": lambda: torch.index_select(signed, 0, index64, out=out),
        "index_select_int32_one_shot": lambda: torch.index_select(signed, 0, index32, out=out),
        "index_select_int32_per_layer": lambda: [torch.index_select(signed, 0, index32[a:b]) for a, b in bounds],
        "modelring_torch_path_int16": lambda: elementwise._torch_forward(ring, wiring, outs, 0, wiring.fwd, 0),
        "modelring_compiled_int16": lambda: kernels.forward(ring, wiring.fwd, wiring.base, wiring.bits,
                                                            wiring.starts, outs, wiring.scales),
    }
    if torch_compile:
        compiled = torch.compile(lambda table, index: table[index], dynamic=False)
        start = time.perf_counter()
        compiled(signed, index32)
        functions["torch_compile_int32_one_shot"] = lambda: compiled(signed, index32)
        compile_s = time.perf_counter() - start
    result = ratios_to_copy(functions, spec.total, rounds)
    if torch_compile:
        result["torch_compile_first_call_s"] = compile_s
    return result


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--repeat", type=int, default=5,
                        help="independent measurements per case (fresh model and copy buffers each): the copy's own "
                             "speed moves with where its buffers land, so one measurement is not enough")
    parser.add_argument("--variants", action="store_true", help="also time the gather variants (see above)")
    parser.add_argument("--torch-compile", action="store_true", help="with --variants: a torch.compile'd gather")
    parser.add_argument("--out", default="bench/results/floor.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    cases = [("resnet20", 0.1, 1), ("cifar_resnet18", PAPER_RING, 1), ("cifar_resnet18", PAPER_RING, 16)]
    rows = [repeated(lambda: measure(*case, args.rounds), args.repeat) for case in cases]
    for r in rows:
        print(f"{r['model']:>15} T={r['virtual_weights']:>10,} block {r['block']:>2} ({r['kernel']}): copy "
              f"{r['copy_ms']:6.2f} ms | forward {r['forward_over_copy']:5.2f}x copy "
              f"({min(r['forward_over_copy_runs']):.2f}-{max(r['forward_over_copy_runs']):.2f}) | backward "
              f"{r['backward_over_copy']:5.2f}x copy ({min(r['backward_over_copy_runs']):.2f}-"
              f"{max(r['backward_over_copy_runs']):.2f}) | held {r['held_bytes_per_virtual']:.2f} B/virtual",
              flush=True)
    result = {"torch": torch.__version__, "threads": args.threads, "rounds": args.rounds, "repeat": args.repeat,
              "kernel_env": os.environ.get("MODELRING_KERNEL", ""), "rows": rows}
    if args.variants:
        result["forward_variants"] = gather_variants(args.rounds, args.torch_compile)
        for name, value in result["forward_variants"].items():
            print(f"  forward variant {name:>32}: {value:7.2f}" + ("" if name.endswith(("_ms", "_s")) else "x copy"))
    write_result(args.out, result)
    return result


if __name__ == "__main__":
    main()
