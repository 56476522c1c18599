"""Issue 4, experiments 3 and 4: global vs local rings, and the permutation × reflection × sampling ablation.

RPG ResNet-20 on Fashion-MNIST at one fixed budget (ring = 3% of the generated conv weights; stem conv,
classifier and BatchNorm free), same recipe and schedule for every cell:

- rings: one global ring / one ring per stage (3 stages + the rest) / one ring per layer, each sized as the
  same fraction of what it generates, so the DoF agree to a few entries;
- permutation × reflection (4 cells, global ring, even sampling), plus independent sampling (permute and
  reflect on): every virtual weight draws its entry independently, so entries are used unevenly.

Usage (one command; ~15 min on 2 cores):
    python experiments/ring_ablation.py [--root /usr/share/datasets/fashion-mnist] [--seeds 0 1]
Writes runs/ring_ablation/<run>/ and docs/results/ring_ablation/{README.md,ring_ablation.csv,.json,.png}.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from results_table import (NOTES, add_fmnist_arguments, command_line, fmnist_overrides, group_by_setting,
                           mean_std, page_header, pyplot, save_figure, write_markdown, write_rows)

from modelring.sweep import run_settings

RECIPE = "configs/fmnist_resnet20_rpg.yaml"
RINGS = {"global": {}, "per_stage": {"ring.rings": "per_stage"}, "per_layer": {"ring.rings": "per_layer"}}
ABLATION = {
    "permute+reflect": {},
    "permute, no reflect": {"ring.reflect": False},
    "no permute, reflect": {"ring.permute": False},
    "no permute, no reflect": {"ring.permute": False, "ring.reflect": False},
    "independent sampling": {"ring.sampling": "independent"},
}


def label(name: str) -> str:
    return name.replace(", ", "_").replace(" ", "_").replace("+", "_")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_fmnist_arguments(parser, "ring_ablation", train=10000)
    parser.add_argument("--ring-size", type=float, default=0.03)
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    started = time.time()
    # "global" and "permute+reflect" are the same model: trained once, listed in both tables
    cells = {**RINGS, **{k: v for k, v in ABLATION.items() if v}}
    settings = [{"label": label(name), **values} for name, values in cells.items()]
    overrides = [*fmnist_overrides(args), f"ring.size={args.ring_size}"]
    rows = run_settings(RECIPE, settings, seeds=args.seeds, overrides=overrides, out=args.runs)
    out = Path(args.results)
    write_rows(rows, out, "ring_ablation")
    groups = group_by_setting(rows)

    def line(name: str, key: str) -> str:
        m, s = mean_std([r["test_top1"] for r in groups[key]])
        return f"| {name} | {groups[key][0]['dof']:,} | {m:.4f} ± {s:.4f} | {len(groups[key])} |"
    header = ["| setting | DoF | test top-1 (mean ± std) | seeds |", "|---|---|---|---|"]
    lines = [
        *page_header("Global vs local rings, and the permutation × reflection × sampling ablation",
                     command_line("ring_ablation", argv), rows, started),
        f"RPG ResNet-20, ring = {args.ring_size:g} of the generated conv weights, Fashion-MNIST first "
        f"{args.train:,} training / {args.test:,} test images, {args.epochs} epoch(s), recipe `{RECIPE}`, "
        f"seeds {args.seeds} (the seed sets both the initialisation and the wiring).",
        "",
        "## Global vs local rings (equal DoF)", "", *header,
        *[line(name, label(name)) for name in RINGS],
        "", "## Permutation × reflection, and sampling (global ring)", "", *header,
        *[line(name, label(name) if ABLATION[name] else "global") for name in ABLATION],
    ]
    lines += NOTES
    write_markdown(out / "README.md", lines)
    plot(groups, cells, out / "ring_ablation.png")
    print("\n".join(lines))
    return 0


def plot(groups: dict, cells: dict, path: Path) -> None:
    plt = pyplot()
    if plt is None:
        return
    names = list(cells)
    stats = [mean_std([r["test_top1"] for r in groups[label(n)]]) for n in names]
    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.bar(range(len(names)), [m for m, _ in stats], yerr=[s for _, s in stats], capsize=3,
           color=["C0"] * len(RINGS) + ["C1"] * (len(names) - len(RINGS)))
    ax.set_xticks(range(len(names)), [n.replace(", ", "\n") for n in names], fontsize=7)
    low = min(m - s for m, s in stats)
    ax.set_ylim(max(0.0, low - 0.05), min(1.0, max(m + s for m, s in stats) + 0.02))
    ax.set_ylabel("test top-1")
    ax.grid(True, axis="y", alpha=0.3)
    save_figure(fig, path)


if __name__ == "__main__":
    sys.exit(main())
