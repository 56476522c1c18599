"""The prepared GPU check: what a session lent a GPU runs first (about 3-5 minutes on one GPU).

1. Correctness on the device: a converted ResNet-20 and a GPT generate exactly the weights the CPU generates, the
   ring gradient equals the CPU's (the same gathers, summed in the same order), and two backward passes on the
   device are bitwise equal (no atomics).
2. Generation against a memory copy: forward and backward of CIFAR ResNet-18's 11.2 M weights from the paper's ring,
   as multiples of a ``copy_`` of the same number of float32 values, timed with CUDA events.
3. Training steps RPG/dense (AdamW; dense and RPG interleaved, median of the timed steps): ResNet-20 at batch 128
   and ``gpt_medium`` (12 x 768) at batch 8 x 256 tokens; peak memory RPG/dense for the GPT.

Prints figures and writes JSON (``--out``, default $OUT/gpu_check.json when $OUT is set). ``--device cpu
--small`` runs the same code on the CPU with small sizes (the test of this script).

Usage: python bench/gpu_check.py [--device cuda] [--steps 10] [--small]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))

from results_io import write_result  # noqa: E402

import modelring as mr  # noqa: E402
from modelring.runfiles import machine_record  # noqa: E402

PAPER_RING = 512 * 512 * 3 * 3


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def seconds(fn, device: torch.device, repeat: int) -> float:
    """Median seconds of ``fn`` over ``repeat`` calls after one warm-up."""
    fn()
    times = []
    for _ in range(repeat):
        sync(device)
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def correctness(device: torch.device, small: bool) -> dict:
    """Weights and ring gradients on ``device`` against the CPU, and determinism of two backward passes."""
    out = {}
    builds = {"resnet20": (lambda: mr.create_model("resnet20"), (4, 3, 32, 32), 0.05),
              "gpt": (lambda: mr.create_model("gpt_tiny" if small else "gpt_small"), (2, 64), 0.05)}
    for name, (build, shape, ring) in builds.items():
        torch.manual_seed(0)
        cpu = mr.convert(build(), ring).eval()
        dev = mr.convert(build(), ring).to(device).eval()
        dev.load_state_dict(cpu.state_dict())
        x = torch.randint(0, 256, shape) if name == "gpt" else torch.randn(shape)
        grads = []
        for model, inputs in ((cpu, x), (dev, x.to(device)), (dev, x.to(device))):
            model.zero_grad(set_to_none=True)
            model(inputs).float().square().mean().backward()
            grads.append(model.modelring.ring0.weight.grad.detach().cpu().clone())
        weights_equal = all(torch.equal(a.detach().cpu(), b.detach().cpu()) for a, b in
                            zip(cpu.modelring.ring0(), dev.modelring.ring0()))
        out[name] = {"weights_equal_cpu": weights_equal, "ring_grad_max_abs_diff_cpu":
                     float((grads[0] - grads[1]).abs().max()), "backward_bitwise_repeatable":
                     torch.equal(grads[1], grads[2])}
    return out


def generation_vs_copy(device: torch.device, small: bool, repeat: int) -> dict:
    """Forward/backward generation of CIFAR ResNet-18 from the paper's ring, over a copy_ of the same size."""
    model = mr.create_model("resnet8" if small else "cifar_resnet18")
    mr.convert(model, 20_000 if small else PAPER_RING, strict=False)
    model.to(device)
    gen, ring = model.modelring.ring0.generator, model.modelring.ring0.weight
    total = gen.spec.total
    src, dst = torch.randn(total, device=device), torch.empty(total, device=device)
    copy = seconds(lambda: dst.copy_(src), device, repeat)

    def forward():
        gen.clear()
        return gen.weights(ring)

    def backward():
        gen.clear()
        weights = gen.weights(ring)
        torch.autograd.backward(weights, [torch.ones_like(w) for w in weights])
    fwd = seconds(forward, device, repeat)
    both = seconds(backward, device, repeat)
    return {"weights": total, "copy_s": copy, "forward_x_copy": fwd / copy, "backward_x_copy": (both - fwd) / copy}


def step_ratio(device: torch.device, build, inputs, ring, steps: int) -> dict:
    """Median AdamW step RPG/dense, interleaved; peak memory of each (CUDA)."""
    x, y = inputs
    out = {}
    models = {}
    for kind in ("dense", "rpg"):
        torch.manual_seed(0)
        model = build()
        if kind == "rpg":
            mr.convert(model, ring)
        model.to(device)
        models[kind] = (model, torch.optim.AdamW(model.parameters(), lr=1e-4))
    times = {k: [] for k in models}
    peaks = {}
    for i in range(steps + 2):
        for kind, (model, opt) in models.items():
            if device.type == "cuda" and i == 2:
                torch.cuda.reset_peak_memory_stats(device)
                base = torch.cuda.memory_allocated(device)
            sync(device)
            start = time.perf_counter()
            opt.zero_grad(set_to_none=True)
            logits = model(x)
            torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1)).backward()
            opt.step()
            sync(device)
            if i >= 2:
                times[kind].append(time.perf_counter() - start)
            if device.type == "cuda" and i == steps + 1:
                peaks[kind] = torch.cuda.max_memory_allocated(device) - base
    out = {k: statistics.median(v) for k, v in times.items()}
    out["ratio"] = out["rpg"] / out["dense"]
    if peaks:
        out["peak_memory_ratio"] = peaks["rpg"] / peaks["dense"]
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--small", action="store_true", help="small sizes (a smoke run, e.g. on the CPU)")
    parser.add_argument("--out", default=os.path.join(os.environ.get("OUT", "bench/results"), "gpu_check.json"))
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("no CUDA device visible to torch: run with --device cpu --small for a smoke run")
    result = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
              "machine": machine_record({"train": {}}), "small": args.small}
    result["correctness"] = correctness(device, args.small)
    print("correctness:", result["correctness"], flush=True)
    result["generation"] = generation_vs_copy(device, args.small, args.repeat)
    print("generation:", result["generation"], flush=True)
    batch = 16 if args.small else 128
    result["resnet20_step"] = step_ratio(device, lambda: mr.create_model("resnet20"),
                                         (torch.randn(batch, 3, 32, 32, device=device),
                                          torch.randint(0, 10, (batch,), device=device)), 0.1, args.steps)
    print("resnet20 step:", result["resnet20_step"], flush=True)
    gpt, tokens = ("gpt_tiny", (2, 64)) if args.small else ("gpt_medium", (8, 256))
    ids = torch.randint(0, 256, tokens, device=device)
    result["gpt_step"] = step_ratio(device, lambda: mr.create_model(gpt), (ids, torch.roll(ids, -1, 1)), 0.01,
                                    args.steps)
    print(f"{gpt} step:", result["gpt_step"], flush=True)
    write_result(args.out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
