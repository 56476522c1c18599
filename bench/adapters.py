"""Benchmark: a training step of a ring adapter against a hand-written LoRA at equal trainable parameters.

Both fine-tune the same small GPT (``gpt_tiny``: every Linear weight adapted, everything else frozen) with AdamW on
random tokens. LoRA of rank r on a Linear (in, out) trains r·(in + out) scalars (A Kaiming-uniform, B zero, output
scaled by alpha/r, as peft does); the ring adapter gets exactly as many ring entries (``modelring.adapt``, zero
start). The full fine-tuning step of the same model is timed too, for scale. Steps are interleaved (the order
alternates every round) and each ratio is the median of per-round ratios, so a shared machine's drift hits all
alike. Prints figures and writes JSON (``--out``) with the CPU model and thread count.

Usage: python bench/adapters.py [--ranks 1 4 16] [--rounds 15] [--batch 8] [--length 128] [--threads 1]
"""
from __future__ import annotations

import argparse
import copy
import math
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

sys.path.insert(0, str(Path(__file__).parent))

from results_io import write_result  # noqa: E402

import modelring as mr  # noqa: E402
from modelring.runfiles import machine_record  # noqa: E402


class LoRALinear(nn.Module):
    """A frozen Linear plus B·A·x·(alpha/r): LoRA (Hu et al. 2021) as peft implements it, by hand."""

    def __init__(self, base: nn.Linear, rank: int, alpha: float = 1.0):
        super().__init__()
        self.base = base
        self.lora_A = nn.Parameter(torch.empty(rank, base.in_features))
        self.lora_B = nn.Parameter(torch.zeros(base.out_features, rank))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
        self.scaling = alpha / rank

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + F.linear(F.linear(x, self.lora_A), self.lora_B) * self.scaling


def with_lora(model: nn.Module, rank: int) -> nn.Module:
    """Every Linear wrapped in ``LoRALinear``; only the LoRA factors trainable."""
    for param in model.parameters():
        param.requires_grad_(False)
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.Linear):
                setattr(parent, name, LoRALinear(child, rank))
    return model


def trainable(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def stepper(model: nn.Module, tokens: torch.Tensor):
    """One AdamW step of next-token prediction over the model's trainable tensors."""
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    model.train()

    def step() -> float:
        start = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        logits = model(tokens[:, :-1])
        F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tokens[:, 1:].reshape(-1)).backward()
        opt.step()
        return time.perf_counter() - start

    return step


def compare(rank: int, rounds: int, batch: int, length: int) -> dict:
    """Median step seconds of ring adapter, LoRA and full fine-tuning, and the median per-round ratios."""
    torch.manual_seed(0)
    base = mr.create_model("gpt_tiny")
    tokens = torch.randint(0, 256, (batch, length + 1))
    lora = with_lora(copy.deepcopy(base), rank)
    ring = mr.adapt(copy.deepcopy(base), trainable(lora))
    assert trainable(ring) == trainable(lora)
    steps = {"ring": stepper(ring, tokens), "lora": stepper(lora, tokens), "full": stepper(base, tokens)}
    for step in steps.values():  # warm-up: wiring built, allocator and optimizer state in place
        step(), step()
    times = {name: [] for name in steps}
    for r in range(rounds):
        for name in (list(steps) if r % 2 == 0 else list(reversed(steps))):
            times[name].append(steps[name]())
    per_round = lambda a, b: statistics.median(x / y for x, y in zip(times[a], times[b]))  # noqa: E731
    return {"rank": rank, "trainable": trainable(lora), "adapted_weights": mr.count_params(ring).adapted,
            **{f"{name}_s": statistics.median(t) for name, t in times.items()},
            "ring_over_lora": per_round("ring", "lora"), "ring_over_full": per_round("ring", "full"),
            "lora_over_full": per_round("lora", "full"),
            "ring_held_bytes": mr.count_params(ring).held_bytes}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ranks", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--length", type=int, default=128)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--note", default="", help="e.g. whether the machine was shared")
    parser.add_argument("--out", default="bench/results/adapters.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    cases = []
    for rank in args.ranks:
        row = compare(rank, args.rounds, args.batch, args.length)
        cases.append(row)
        print(f"rank {rank:>3} = {row['trainable']:>7,} trainable: ring {row['ring_s'] * 1e3:7.1f} ms, LoRA "
              f"{row['lora_s'] * 1e3:7.1f} ms, full {row['full_s'] * 1e3:7.1f} ms; ring/LoRA "
              f"{row['ring_over_lora']:.2f}, ring/full {row['ring_over_full']:.2f}, LoRA/full "
              f"{row['lora_over_full']:.2f}")
    machine = machine_record({"train": {}})
    print(f"{machine['cpu']} ({machine['isa']}), {machine['threads']} thread(s); {args.note}")
    result = {"model": "gpt_tiny", "batch": args.batch, "length": args.length, "rounds": args.rounds,
              "optimizer": "adamw", "note": args.note, "cases": cases, "machine": machine}
    write_result(args.out, result)
    return result


if __name__ == "__main__":
    main()
