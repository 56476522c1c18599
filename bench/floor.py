"""Benchmark: generation throughput against its physical floor, a plain copy of the same bytes.

For each ring size the forward (all virtual weights from the ring) and the backward (ring gradient from all
weight gradients) are timed against ``torch.Tensor.copy_`` of T float32 values between two preallocated
buffers, in the same process. Prints figures and writes bench/results/floor.json.

Usage: python bench/floor.py [--threads 2] [--repeats 7]
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

import modelring as mr
from modelring.convert import get_state
from results_io import write_result


def _median_ms(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def measure(model_name: str, ring_size, block: int, repeats: int) -> dict:
    model = mr.convert(mr.create_model(model_name), ring_size, block=block)
    state = get_state(model)
    gen, ring = state.generators[0], state.ring(0)
    total = gen.spec.total
    src, dst = torch.randn(total), torch.empty(total)
    grads = [torch.randn(s.shape) for s in gen.spec.segments]

    def forward():
        gen.clear()
        return gen.weights(ring)

    def backward():
        ring.grad = None
        gen.clear()
        torch.autograd.backward(gen.weights(ring), grads)

    copy_ms = _median_ms(lambda: dst.copy_(src), repeats)
    fwd_ms = _median_ms(forward, repeats)
    fwd_bwd_ms = _median_ms(backward, repeats)
    return {"model": model_name, "virtual_weights": total, "ring": gen.spec.size, "block": block,
            "copy_ms": copy_ms, "forward_ms": fwd_ms, "backward_ms": fwd_bwd_ms - fwd_ms,
            "forward_over_copy": fwd_ms / copy_ms, "backward_over_copy": (fwd_bwd_ms - fwd_ms) / copy_ms,
            "forward_gb_per_s": 4 * total / fwd_ms / 1e6}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--out", default="bench/results/floor.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    rows = [measure("resnet20", 0.1, 16, args.repeats), measure("cifar_resnet18", 2_359_296, 16, args.repeats),
            measure("cifar_resnet18", 2_359_296, 1, args.repeats)]
    for r in rows:
        print(f"{r['model']:>15} T={r['virtual_weights']:>10,} block {r['block']:>2}: copy {r['copy_ms']:6.2f} ms | "
              f"forward {r['forward_ms']:7.2f} ms ({r['forward_over_copy']:.1f}x copy) | backward "
              f"{r['backward_ms']:7.2f} ms ({r['backward_over_copy']:.1f}x copy)")
    result = {"torch": torch.__version__, "threads": args.threads, "rows": rows}
    write_result(args.out, result)
    return result


if __name__ == "__main__":
    main()
