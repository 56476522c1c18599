"""Issue 13, experiment 1: seed noise and learning-rate pilot (Fashion-MNIST, ResNet-20, element-wise wiring).

Every run trains on 20,000 training images for 10 epochs (cosine, SGD Nesterov, batch 128) and is scored on a
validation split of 5,000 images held out of the 60,000 training images (``data.val_size``: the same images for
every run); the test set is not touched. Arms:

- noise: a global 3% ring at lr 0.1, seeds 0-3 (seed sigma -> minimum detectable difference for later experiments);
- lr: lr in {0.05, 0.1, 0.2} for dense, global 3%, per-layer 3% and global 0.3% (seed 0).

Resumable: each finished run is reused (its stored config must match), a killed run continues from its last.pt,
and the tables are rewritten after every run, so they can be committed as runs land. Run it from a separate git
worktree at a fixed commit (recorded in the tables):

    python experiments/pilot.py [--root /usr/share/datasets/fashion-mnist] [--runs runs/pilot]
Writes docs/results/pilot/{README.md, pilot.csv, pilot.json, metrics/<run>.csv}.
"""
from __future__ import annotations

import argparse
import statistics
import sys

import torch

from results_table import command_line
from stats import mde
from validation import add_arguments, run_plan, schedule_text

ARMS = {"dense": {"method": "dense"}, "global_3%": {"ring.size": 0.03},
        "per_layer_3%": {"ring.size": 0.03, "ring.rings": "per_layer"}, "global_0.3%": {"ring.size": 0.003}}
LRS = (0.05, 0.1, 0.2)
NOISE_SEEDS = (0, 1, 2, 3)
NOISE = "global_3%_lr0.1"


def plan() -> list[tuple[dict, int]]:
    """(setting, seed) in the order they run: the noise arm first (it sizes every later experiment)."""
    noise = [({"label": NOISE, **ARMS["global_3%"], "train.lr": 0.1}, s) for s in NOISE_SEEDS]
    grid = [({"label": f"{arm}_lr{lr}", **ARMS[arm], "train.lr": lr}, 0) for arm in ARMS for lr in LRS
            if not (arm == "global_3%" and lr == 0.1)]
    return noise + grid


def noise_lines(values: dict[str, list[float]]) -> list[str]:
    """Seed sigma of the noise arm and the MDE it implies for later experiments."""
    noise = values.get(NOISE, [])
    if len(noise) < 2:
        return []
    sigma = statistics.stdev(noise)
    return ["", f"Seed sigma of the global 3% ring at lr 0.1 ({len(noise)} seeds): {sigma:.4f}. Minimum detectable "
                "difference between two arms (alpha 0.05, power 0.8, two-sided t-test) with n seeds per arm: "
            + ", ".join(f"n={n}: {mde(sigma, n):.4f}" for n in (2, 3, 4, 6, 8)) + "."]


def chosen_lrs(values: dict[str, list[float]]) -> dict[str, tuple[float, dict[float, float]]]:
    """Per arm whose whole lr grid has landed: (the lr with the highest seed-0 validation top-1, {lr: top-1}).

    The rule, fixed while the grid ran (only dense lr 0.05 had landed): seed 0 only for every lr (the noise arm's other seeds would give lr 0.1 an
    average the other lrs do not get), highest final validation top-1 wins, a tie goes to the recipe's lr 0.1."""
    chosen = {}
    for arm in ARMS:
        scores = {lr: values[f"{arm}_lr{lr}"][0] for lr in LRS if values.get(f"{arm}_lr{lr}")}
        if len(scores) == len(LRS):
            chosen[arm] = (max(LRS, key=lambda lr: (scores[lr], lr == 0.1)), scores)
    return chosen


def lr_lines(values: dict[str, list[float]]) -> list[str]:
    """The lr table: each arm's seed-0 validation top-1 per lr, the chosen lr, and its margin over the runner-up in
    units of the noise arm's sigma * sqrt(2) (the sd of a difference of two single-seed runs)."""
    chosen = chosen_lrs(values)
    if not chosen:
        return []
    noise = values.get(NOISE, [])
    sd_diff = statistics.stdev(noise) * 2 ** 0.5 if len(noise) >= 2 else None
    lines = ["", "Learning rate per arm, chosen on validation (seed 0; highest final val top-1, ties to 0.1):", "",
             "| arm | " + " | ".join(f"lr {lr}" for lr in LRS) + " | chosen | margin over the next lr |",
             "|---|" + "---|" * len(LRS) + "---|---|"]
    for arm, (lr, scores) in chosen.items():
        runner_up = max(v for k, v in scores.items() if k != lr)
        margin = scores[lr] - runner_up
        units = f" ({margin / sd_diff:.1f} sd of a single-seed difference)" if sd_diff else ""
        lines.append(f"| {arm} | " + " | ".join(f"{scores[k]:.4f}" for k in LRS) + f" | {lr} | {margin:+.4f}{units} |")
    return lines


def extra_lines(values: dict[str, list[float]]) -> list[str]:
    return noise_lines(values) + lr_lines(values)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_arguments(parser, "runs/pilot", "docs/results/pilot")
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    run_plan(plan(), args, stem="pilot", title="Pilot: seed noise and learning rate (issue 13, experiment 1)",
             description=f"Fashion-MNIST, ResNet-20 (stem conv and classifier free), element-wise wiring (v2), "
                         f"{schedule_text(args)}; the test set is not used.", reference=None,
             command=command_line("pilot", argv), extra=extra_lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
