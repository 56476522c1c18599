"""Experiment: the RPG paper's multi-task ablation — sub-network reuse, new BN per reuse, permutation and
reflection — at equal ring size, on procedurally generated 2D-3D-S-format data.

Grid: {no reuse, reuse + shared BN, reuse + new BN} x permute {on, off} x reflect {on, off} = 12 RPG cells, each
with the same global ring (``--ring-size`` entries; stem conv and 1x1 heads free, BN free), plus the dense
no-reuse model as reference, plus a repeat of the full RPG cell with another seed (to show the seed noise).
Every cell is a normal ``modelring train`` run of ``configs/multitask_rpg.yaml`` with overrides; runs that
already have a ``report.json`` are reused, so the command resumes. Data is generated when missing.

Writes docs/results/multitask/ablation.{csv,md}.

Usage: python experiments/multitask_ablation.py [--epochs 5] [--train 1000] [--ring-size 4000]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sys
import time
from pathlib import Path

import torch

from results_table import write_csv

from modelring.config import load_config
from modelring.io import write_atomic
from modelring.tasks.multitask.synth import write_dataset
from modelring.loop import fit

RECIPE = Path(__file__).resolve().parent.parent / "configs" / "multitask_rpg.yaml"
REUSE = {"no reuse": (False, False), "reuse, shared BN": (True, False), "reuse, new BN": (True, True)}
NOTES = "## Notes (hand-written)"
COLUMNS = ("cell", "reuse", "new_bn", "permute", "reflect", "seed", "dof", "ring", "free", "virtual",
           "depth_rmse", "normal_rmse", "normal_angle", "miou", "pixel_acc", "train_seconds")


def cells(seed: int, repeat_seed: int | None) -> list[dict]:
    """Every run of the grid: name and the settings it changes."""
    out = [{"cell": "dense (no reuse)", "ring": False, "reuse": False, "new_bn": False, "permute": None,
            "reflect": None, "seed": seed}]
    for name, (reuse, new_bn) in REUSE.items():
        for permute in (True, False):
            for reflect in (True, False):
                out.append({"cell": f"{name}, perm {'on' if permute else 'off'}, refl {'on' if reflect else 'off'}",
                            "ring": True, "reuse": reuse, "new_bn": new_bn, "permute": permute,
                            "reflect": reflect, "seed": seed})
    if repeat_seed is not None:
        out.append({**out[-4], "seed": repeat_seed})  # reuse + new BN, perm on, refl on, another seed
    return out


def overrides(cell: dict, args) -> list[str]:
    """Config overrides of one cell."""
    kw = f"{{width: {args.width}, levels: 3, reuse: {str(cell['reuse']).lower()}, " \
         f"new_norm: {str(cell['new_bn']).lower()}}}"
    items = [f"model.kwargs={kw}", f"data.root={args.data}", f"data.image_size={args.image_size}",
             f"train.epochs={args.epochs}", f"train.seed={cell['seed']}", f"train.threads={args.threads}",
             "train.progress=false", "out.tensorboard=false", f"method={'rpg' if cell['ring'] else 'dense'}",
             f"ring.size={args.ring_size}", f"ring.seed={cell['seed']}"]
    if cell["ring"]:
        items += [f"ring.permute={str(cell['permute']).lower()}", f"ring.reflect={str(cell['reflect']).lower()}"]
    return items


def run_dir(cell: dict, args) -> Path:
    slug = cell["cell"].replace(", ", "_").replace(" ", "-").replace("(", "").replace(")", "")
    return args.out / f"{slug}_seed{cell['seed']}"


def run_cell(cell: dict, args) -> dict:
    """Train one cell (or read its finished report) and return its table row."""
    out = run_dir(cell, args)
    if not (out / "report.json").is_file():
        cfg = load_config(RECIPE, overrides(cell, args) + [f"out.dir={out}"])
        print(f"\n=== {cell['cell']} (seed {cell['seed']}) -> {out}", flush=True)
        fit(cfg, resume=True, log=lambda *a: print(*a, flush=True))
    report = json.loads((out / "report.json").read_text())
    return {**{k: cell[k] for k in ("cell", "reuse", "new_bn", "permute", "reflect", "seed")},
            "dof": report["dof"], "ring": report["ring"], "free": report["free"], "virtual": report["dense_params"],
            **{k: report[f"test_{k}"] for k in ("depth_rmse", "normal_rmse", "normal_angle", "miou", "pixel_acc")},
            "train_seconds": report["train_seconds"]}


def markdown(rows: list[dict], args, wall: float, command: str, data_summary: str) -> str:
    """The results page: setup, command, machine, wall time, table."""
    lines = ["# Multi-task dense regression: sub-network reuse × new BN × permutation × reflection", "",
             f"Command: `{command}`", "",
             f"Machine: {platform.machine()} CPU, {os.cpu_count()} cores shared with two other experiments, "
             f"`train.threads={args.threads}`; Python {platform.python_version()}, torch {torch.__version__}. "
             f"Wall time of the whole command: {wall / 60:.1f} min.", "",
             f"Data: procedurally rendered indoor scenes in the 2D-3D-S layout (`{args.data}`), "
             f"{args.image_size}x{args.image_size} px, {args.train} train scenes (areas 1-4, 6), {args.test} test "
             f"scenes (areas 5a/5b). {data_summary}", "",
             f"Model: `multitask_net` width {args.width}, 3 levels (shared encoder, depth/normal/semantic decoders "
             f"of 3 upsampling blocks each). RPG: one global ring of {args.ring_size:,} entries for every 3x3 conv "
             "(stem conv, 1x1 heads and all BN free); `reuse` = one upsampling block applied 3 times per decoder, "
             "`new BN` = its own BatchNorm per application. Training: SGD nesterov lr 0.05, cosine, "
             f"{args.epochs} epochs, batch 32, L1 depth + (1 - cos) normals + 0.5 CE; one seed per cell "
             "(plus one repeat of the full RPG cell with another seed). Metrics on the test areas, final epoch.", "",
             "| cell | seed | DoF | ring | free | virtual | depth RMSE (m) | normal RMSE | normal angle (deg) | mIoU "
             "| pixel acc | train s |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['cell']} | {r['seed']} | {r['dof']:,} | {r['ring']:,} | {r['free']:,} | {r['virtual']:,} "
                     f"| {r['depth_rmse']:.3f} | {r['normal_rmse']:.3f} | {r['normal_angle']:.1f} | {r['miou']:.3f} "
                     f"| {r['pixel_acc']:.3f} | {r['train_seconds']:.0f} |")
    lines += ["", "DoF = ring + free (BN affine, stem conv, heads); `virtual` = the dense parameter count of the "
              "same architecture (generated + free). Reuse with shared BN has fewer free BN parameters; every "
              "other RPG cell has exactly the same DoF.", ""]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("data/s2d3ds_synth_48"))
    parser.add_argument("--out", type=Path, default=Path("runs/multitask_ablation"))
    parser.add_argument("--results", type=Path, default=Path("docs/results/multitask"))
    parser.add_argument("--train", type=int, default=1000, help="training scenes to generate")
    parser.add_argument("--test", type=int, default=250, help="test scenes to generate")
    parser.add_argument("--image-size", type=int, default=48)
    parser.add_argument("--data-seed", type=int, default=0)
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--ring-size", type=int, default=4000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeat-seed", type=int, default=1, help="second seed for the full RPG cell; -1: none")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    command = "python experiments/multitask_ablation.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    if not args.data.exists():
        print(write_dataset(args.data, train=args.train, test=args.test, seed=args.data_seed,
                            image_size=args.image_size), flush=True)
    data_summary = f"Generated with `modelring make-data multitask {args.data} --train {args.train} --test " \
                   f"{args.test} --seed {args.data_seed} --image-size {args.image_size}`."
    rows = []
    args.results.mkdir(parents=True, exist_ok=True)
    for cell in cells(args.seed, None if args.repeat_seed < 0 else args.repeat_seed):
        rows.append(run_cell(cell, args))
        write_results(rows, args, time.perf_counter() - start, command, data_summary)  # partial results too
    print((args.results / "ablation.md").read_text())
    return 0


def write_results(rows: list[dict], args, wall: float, command: str, data_summary: str) -> None:
    """ablation.csv and ablation.md, written atomically."""
    write_csv([{k: r[k] for k in COLUMNS} for r in rows], args.results / "ablation.csv")
    page = markdown(rows, args, wall, command, data_summary) + kept_notes(args.results / "ablation.md")
    write_atomic(args.results / "ablation.md", lambda tmp: Path(tmp).write_text(page))


def kept_notes(path: Path) -> str:
    """The hand-written part of an existing results page (from NOTES on), so a rerun does not erase it."""
    text = path.read_text() if path.is_file() else ""
    return text[text.index(NOTES):] if NOTES in text else ""


if __name__ == "__main__":
    sys.exit(main())
