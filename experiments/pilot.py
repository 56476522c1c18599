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
import shutil
import subprocess
import sys
import time
from pathlib import Path

import torch

from results_table import machine, write_markdown, write_rows
from stats import mde, mean_ci

from modelring.sweep import run_settings

RECIPE = "configs/fmnist_resnet20_rpg.yaml"
ARMS = {"dense": {"method": "dense"}, "global_3%": {"ring.size": 0.03},
        "per_layer_3%": {"ring.size": 0.03, "ring.rings": "per_layer"}, "global_0.3%": {"ring.size": 0.003}}
LRS = (0.05, 0.1, 0.2)
NOISE_SEEDS = (0, 1, 2, 3)


def plan() -> list[tuple[dict, int]]:
    """(setting, seed) in the order they run: the noise arm first (it sizes every later experiment)."""
    noise = [({"label": "global_3%_lr0.1", **ARMS["global_3%"], "train.lr": 0.1}, s) for s in NOISE_SEEDS]
    grid = [({"label": f"{arm}_lr{lr}", **ARMS[arm], "train.lr": lr}, 0) for arm in ARMS for lr in LRS
            if not (arm == "global_3%" and lr == 0.1)]
    return noise + grid


def commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def write_tables(rows: list[dict], runs: Path, out: Path, command: str, started: float, args) -> None:
    write_rows(rows, out, "pilot")
    (out / "metrics").mkdir(parents=True, exist_ok=True)
    for r in rows:  # per-epoch metrics of every run beside the table
        shutil.copyfile(runs / r["run"] / "metrics.csv", out / "metrics" / f"{r['run']}.csv")
    by_label: dict[str, list[dict]] = {}
    for r in rows:
        by_label.setdefault(r["label"], []).append(r)
    lines = ["# Pilot: seed noise and learning rate (issue 13, experiment 1)", "",
             f"Command: `{command}` at commit `{commit()}`  ", f"Machine: {machine()}. "
             f"Training time so far: {sum(r.get('wall_s', 0) for r in rows) / 60:.1f} min over {len(rows)} runs "
             f"(this invocation {(time.time() - started) / 60:.1f} min).", "",
             f"Fashion-MNIST, ResNet-20 (stem conv and classifier free), element-wise wiring (v2), {args.train:,} "
             f"training images, {args.epochs} epochs, cosine, SGD Nesterov 0.9, batch 128, wd 1e-4; scored on "
             f"{args.val:,} validation images "
             "held out of the training set (the test set is not used). Final-epoch validation top-1; mean and 95% "
             "t-interval over seeds where there are several.", "",
             "| setting | seeds | DoF | val top-1 (final) | best epoch val top-1 |", "|---|---|---|---|---|"]
    for label, members in by_label.items():
        accs = [m["val_top1"] for m in members]
        mean, ci = mean_ci(accs)
        cell = f"{mean:.4f}" + (f" ± {ci:.4f}" if len(accs) > 1 else "")
        best = max(m["best_val_top1"] for m in members)
        lines.append(f"| {label} | {','.join(str(m['seed']) for m in members)} | {members[0]['dof']:,} | {cell} | "
                     f"{best:.4f} |")
    noise = [m["val_top1"] for m in by_label.get("global_3%_lr0.1", [])]
    if len(noise) >= 2:
        import statistics
        sigma = statistics.stdev(noise)
        lines += ["", f"Seed sigma of the global 3% ring at lr 0.1 ({len(noise)} seeds): {sigma:.4f}. Minimum "
                  "detectable difference between two arms (alpha 0.05, power 0.8, two-sided t-test) with n seeds "
                  "per arm: " + ", ".join(f"n={n}: {mde(sigma, n):.4f}" for n in (2, 3, 4, 6, 8)) + "."]
    lines += ["", "Per-epoch metrics of every run: [metrics/](metrics/). Reading of these numbers: "
              "[notes.md](notes.md) (written when the pilot is complete)."]
    write_markdown(out / "README.md", lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", default="/usr/share/datasets/fashion-mnist")
    parser.add_argument("--runs", default="runs/pilot")
    parser.add_argument("--results", default="docs/results/pilot")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--train", type=int, default=20000)
    parser.add_argument("--val", type=int, default=5000)
    parser.add_argument("--limit-runs", type=int, default=None, help="stop after this many runs of the plan")
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    started, runs, out = time.time(), Path(args.runs), Path(args.results)
    command = "python experiments/pilot.py " + " ".join(argv if argv is not None else sys.argv[1:])
    overrides = [f"data.root={args.root}", f"data.train_limit={args.train}", f"data.val_size={args.val}",
                 f"train.epochs={args.epochs}", "train.progress=false", "out.tensorboard=false", "train.threads=2"]
    rows = []
    for setting, seed in plan()[: args.limit_runs]:
        rows += [{**r, "label": setting["label"]} for r in
                 run_settings(RECIPE, [setting], seeds=[seed], overrides=overrides, out=runs)]
        write_tables(rows, runs, out, command.strip(), started, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
