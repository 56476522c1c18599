"""Issue 4, experiment 2: RPG against equal-DoF baselines on Fashion-MNIST, same pipeline and schedule.

At each budget (ring = a fraction of ResNet-20's generated conv weights; stem conv, classifier and BatchNorm
free, as in the paper) five models with (about) the same number of trainable parameters:

- ``rpg``: one global ring, even sampling, permutation + reflection (modelring's default);
- ``hashednets``: HashedNets (Chen et al. 2015): each layer its own bucket vector of the same fraction, every
  weight hashed independently to a bucket with a sign hash (``method=hashednets``);
- ``prune``: the dense ResNet-20 trained for half the steps, then global magnitude pruning of the same conv
  weights down to the ring's size, fine-tuned for the other half with the mask held (same total epochs);
- ``thin``: a dense ResNet-20 whose width (16 in the paper) is scaled so its parameter count is closest;
- ``shallow``: a dense ResNet-8 (one block per stage), width scaled likewise (depth alone cannot reach
  budgets this small: ResNet-8 at full width has 78k parameters).

Usage (one command; ~35 min on 2 cores):
    python experiments/equal_dof.py [--root /usr/share/datasets/fashion-mnist] [--seeds 0 1]
Writes runs/equal_dof/<run>/ and docs/results/equal_dof/{README.md,equal_dof.csv,equal_dof.json,equal_dof.png}.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from results_table import (NOTES, add_fmnist_arguments, command_line, fmnist_overrides, group_by_setting,
                           mean_std, page_header, pyplot, save_figure, write_markdown, write_rows)

import modelring as mr
from modelring.config import load_config
from modelring.sweep import run_settings
from modelring.methods import apply_method

RECIPE = "configs/fmnist_resnet20_rpg.yaml"
METHODS = ("rpg", "hashednets", "prune", "thin", "shallow")


def dense_params(name: str, width: int) -> int:
    return sum(p.numel() for p in mr.create_model(name, num_classes=10, in_chans=1, width=width).parameters())


def width_for(name: str, target: int, widths=range(1, 65)) -> int:
    """The width whose dense parameter count is closest to ``target``."""
    return min(widths, key=lambda w: abs(dense_params(name, w) - target))


def rpg_dof(ring_size: float) -> int:
    cfg = load_config(RECIPE, [f"ring.size={ring_size}"])
    model = apply_method(mr.create_model("resnet20", num_classes=10, in_chans=1), cfg)
    return mr.count_params(model).dof


def settings_for(budget: float) -> list[dict]:
    target = rpg_dof(budget)
    return [
        {"label": f"rpg_{budget}", "ring.size": budget},
        {"label": f"hashednets_{budget}", "method": "hashednets", "ring.size": budget},
        {"label": f"prune_{budget}", "method": "prune-global", "prune.keep": budget, "prune.at": 0.5},
        {"label": f"thin_{budget}", "method": "dense", "model.kwargs.width": width_for("resnet20", target)},
        {"label": f"shallow_{budget}", "method": "dense", "model.name": "resnet8",
         "model.kwargs.width": width_for("resnet8", target)},
    ]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_fmnist_arguments(parser, "equal_dof", train=20000)
    parser.add_argument("--budgets", type=float, nargs="+", default=[0.01, 0.03, 0.08])
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    started = time.time()
    settings = [s for b in args.budgets for s in settings_for(b)] + [{"label": "dense", "method": "dense"}]
    rows = run_settings(RECIPE, settings, seeds=args.seeds, overrides=fmnist_overrides(args), out=args.runs)
    out = Path(args.results)
    write_rows(rows, out, "equal_dof")
    groups = group_by_setting(rows)
    table = ["| method | " + " | ".join(f"budget {b:g}" for b in args.budgets) + " |",
             "|---|" + "---|" * len(args.budgets)]
    for method in METHODS:
        cells = []
        for b in args.budgets:
            runs = groups[f"{method}_{b}"]
            m, s = mean_std([r["test_top1"] for r in runs])
            cells.append(f"{m:.4f} ± {s:.4f} (DoF {runs[0]['dof']:,})")
        table.append(f"| {method} | " + " | ".join(cells) + " |")
    dm, ds = mean_std([r["test_top1"] for r in groups["dense"]])
    widths = {r["label"]: r.get("model.kwargs.width") for r in rows if "model.kwargs.width" in r}
    lines = [
        *page_header("Equal-DoF baselines: RPG vs HashedNets, pruning, thinner and shallower dense ResNets",
                     command_line("equal_dof", argv), rows, started),
        f"Fashion-MNIST, first {args.train:,} training / {args.test:,} test images, {args.epochs} epoch(s), "
        f"recipe `{RECIPE}` (SGD Nesterov, cosine, batch 128), seeds {args.seeds} (mean ± std). Budget = ring "
        "size as a fraction of ResNet-20's generated conv weights; the DoF column is what each model trains "
        "(pruning: trainable non-zeros).",
        "",
        *table,
        "",
        f"Dense ResNet-20 (DoF {groups['dense'][0]['dof']:,}): {dm:.4f} ± {ds:.4f}. "
        f"Widths chosen for thin/shallow: {widths}.",
    ]
    lines += NOTES
    write_markdown(out / "README.md", lines)
    plot(groups, args.budgets, dm, out / "equal_dof.png")
    print("\n".join(lines))
    return 0


def plot(groups: dict, budgets: list[float], dense: float, path: Path) -> None:
    plt = pyplot()
    if plt is None:
        return
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for method in METHODS:
        pts = [(groups[f"{method}_{b}"][0]["dof"], *mean_std([r["test_top1"] for r in groups[f"{method}_{b}"]]))
               for b in budgets]
        ax.errorbar([p[0] for p in pts], [p[1] for p in pts], yerr=[p[2] for p in pts], marker="o", capsize=3,
                    label=method)
    ax.axhline(dense, color="k", ls="--", label="dense ResNet-20")
    ax.set_xscale("log")
    ax.set_xlabel("trainable parameters (DoF)")
    ax.set_ylabel("test top-1")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    save_figure(fig, path)


if __name__ == "__main__":
    sys.exit(main())
