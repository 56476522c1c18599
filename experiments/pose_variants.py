"""Experiment: pose variants (a)-(d) of issue 5 on generated MPII-layout data, PCKh@0.5 against DoF.

Runs ``configs/pose_independent.yaml`` (the shared recipe; ``pose.reuse`` and ``method`` switch the model) for
  independent  every refinement stage its own dense module            (largest DoF)
  reuse        CPM-style: one refinement module applied S-1 times, new BN per application
  rpg          every stage its own module, all generated from one global ring sized so that the DoF equals
               reuse's (ring = DoF(reuse) - free parameters of the converted model)
  reuse_rpg    reuse + a ring half that size
  rpg          again with the reuse_rpg DoF (so (d) has an equal-DoF partner)
for every seed. Data is generated first when missing. Each run is resumable (a finished run with its
report.json is reused). Writes OUT/runs.csv and RESULTS/{runs.csv, summary.csv, README.md, pckh_vs_dof.png}.

Usage: python experiments/pose_variants.py [--train 2000 --test 400 --epochs 5 --seeds 0 1]
       [--settings reuse rpg] [--out runs/pose_variants] [--data DIR] [--results docs/results/pose]
"""
from __future__ import annotations

import argparse
import io
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

from results_table import command_line, mean_std, pyplot, save_figure, write_csv

import modelring as mr
from modelring.config import load_config
from modelring.io import write_atomic
from modelring.tasks.pose.synth import write_dataset
from modelring.config import POSE_VARIANTS
from modelring.loop import build_model, fit
from modelring.tasks import get_task

RECIPE = Path(__file__).resolve().parent.parent / "configs" / "pose_independent.yaml"


def config(args, variant: str, ring: int | None, seed: int, out: Path) -> dict:
    """The recipe with this run's variant, ring size, seed, data and schedule."""
    reuse, method = POSE_VARIANTS[variant]
    items = [f"pose.reuse={reuse}", f"method={method}", f"train.seed={seed}", f"data.root={args.data}", f"out.dir={out}",
             f"train.epochs={args.epochs}", "train.threads=1", "train.progress=false", "out.tensorboard=false",
             f"pose.input_size={args.input_size}", f"pose.heatmap_size={args.input_size // 4}"]
    return load_config(RECIPE, items + ([f"ring.size={ring}", f"ring.seed={seed}"] if ring else []))


def build_pose_model(cfg: dict):
    return build_model(get_task("pose"), cfg, None)


def free_params(args, variant: str) -> int:
    """Trainable parameters outside the ring of a converted ``variant`` model (any ring size)."""
    counts = mr.count_params(build_pose_model(config(args, variant, 1000, 0, args.out / "probe")))
    return counts.dof - counts.ring


def plan(args) -> list[tuple[str, str, int | None]]:
    """(label, variant, ring size) of every setting: equal DoF pairs (reuse, rpg) and (reuse_rpg, rpg)."""
    reuse_dof = mr.count_params(build_pose_model(config(args, "reuse", None, 0, args.out / "probe"))).dof
    ring = reuse_dof - free_params(args, "rpg")
    half = (reuse_dof - free_params(args, "reuse_rpg")) // 2
    small = half + free_params(args, "reuse_rpg") - free_params(args, "rpg")
    return [("independent", "independent", None), ("reuse", "reuse", None), ("rpg", "rpg", ring),
            ("reuse_rpg", "reuse_rpg", half), ("rpg (small ring)", "rpg", small)]


def run_dir(args, label: str, seed: int) -> Path:
    """Folder of one run, e.g. OUT/rpg_small_ring_seed0."""
    return args.out / (label.replace(" ", "_").replace("(", "").replace(")", "") + f"_seed{seed}")


def run_one(args, label: str, variant: str, ring: int | None, seed: int) -> dict:
    """Train one setting (or reuse its finished report); returns its row."""
    out = run_dir(args, label, seed)
    if not (out / "report.json").is_file():
        started = time.perf_counter()
        lines = io.StringIO()
        fit(config(args, variant, ring, seed, out), resume=True, log=lambda *a: print(*a, file=lines))
        (out / "train_s.txt").write_text(f"{time.perf_counter() - started:.1f}")
        (out / "log.txt").write_text(lines.getvalue())
    report = json.loads((out / "report.json").read_text())
    seconds = float((out / "train_s.txt").read_text()) if (out / "train_s.txt").is_file() else float("nan")
    row = {"setting": label, "variant": variant, "seed": seed, "ring": report["ring"], "dof": report["dof"],
           "dense_params": report["dense_params"], "test_pckh": report["test_pckh"],
           "best_test_pckh": report["best_test_pckh"], "test_pck": report["test_pck"], "train_s": seconds}
    print(f"{label:18s} seed {seed}: DoF {row['dof']:,}  PCKh@0.5 {row['test_pckh']:.4f}  "
          f"PCK@0.5 {row['test_pck']:.4f}  ({seconds:.0f} s)", flush=True)
    return row


def summarise(rows: list[dict]) -> list[dict]:
    """Mean and std over seeds per setting."""
    summary = []
    for label in dict.fromkeys(r["setting"] for r in rows):
        group = [r for r in rows if r["setting"] == label]
        pckh = mean_std([r["test_pckh"] for r in group])
        pck = mean_std([r["test_pck"] for r in group])
        summary.append({"setting": label, "dof": group[0]["dof"], "ring": group[0]["ring"],
                        "dense_params": group[0]["dense_params"], "seeds": len(group),
                        "pckh_mean": pckh[0], "pckh_std": pckh[1], "pck_mean": pck[0], "pck_std": pck[1],
                        "train_s_mean": statistics.mean(r["train_s"] for r in group)})
    return summary


def plot(path: Path, summary: list[dict]) -> bool:
    """PCKh@0.5 vs DoF (log x) with seed std bars; False when matplotlib is missing."""
    plt = pyplot()
    if plt is None:
        return False
    fig, ax = plt.subplots(figsize=(6, 4))
    for s in summary:
        ax.errorbar(s["dof"], 100 * s["pckh_mean"], yerr=100 * s["pckh_std"], fmt="o", capsize=3, label=s["setting"])
    ax.set_xscale("log")
    ax.set_xlabel("DoF (trainable parameters)")
    ax.set_ylabel("PCKh@0.5 (%)")
    ax.set_title("Pose variants on generated MPII-layout data")
    ax.legend(fontsize=8)
    save_figure(fig, path)
    return True


def markdown(args, summary: list[dict], wall: float, command: str) -> str:
    """The results page."""
    lines = ["# Pose variants: PCKh@0.5 vs DoF (issue 5)", "",
             f"Command: `{command}`", "",
             f"Machine: {platform.machine()} CPU, 2 cores shared with other experiments running at the same time, "
             f"1 torch thread per run; torch {torch.__version__}. Wall time {wall / 60:.1f} min (data generation + "
             "every run, one after another).", "",
             f"Data: `modelring make-data pose` with {args.train} train / {args.test} valid images of "
             f"{args.image_size}x{args.image_size} px (seed 0), read through the MPII JSON reader; input "
             f"{args.input_size}x{args.input_size}, heatmaps {args.input_size // 4}x{args.input_size // 4}. "
             f"Model `pose_cpm` (recipe `configs/pose_independent.yaml`): 4 stages, width 32, {args.epochs} epochs, "
             f"Adam, cosine schedule. RPG: one global ring, stem conv and heatmap 1x1 convs free, BN free.", "",
             "Metric: PCKh@0.5 of the last stage on the valid split (head size = 0.6 × head-box diagonal; mean over "
             "all joints but pelvis and thorax), PCK@0.5 normalised by the torso (l_shoulder–r_hip).", "",
             "| setting | DoF | ring | dense params | seeds | PCKh@0.5 (%) | PCK@0.5 (%) | train s/run |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for s in summary:
        lines.append(f"| {s['setting']} | {s['dof']:,} | {s['ring']:,} | {s['dense_params']:,} | {s['seeds']} | "
                     f"{100 * s['pckh_mean']:.2f} ± {100 * s['pckh_std']:.2f} | "
                     f"{100 * s['pck_mean']:.2f} ± {100 * s['pck_std']:.2f} | {s['train_s_mean']:.0f} |")
    lines += ["", "± is the std over seeds (sample std; 0 with one seed). Per-run numbers: `runs.csv`.", ""]
    return "\n".join(lines)


def curves(args, settings) -> str:
    """Markdown table: test PCKh@0.5 after each epoch, mean over seeds, per setting (from metrics.jsonl)."""
    lines = ["Test PCKh@0.5 (%) after each epoch, mean over seeds:", "",
             "| setting | " + " | ".join(f"ep {e + 1}" for e in range(args.epochs)) + " |",
             "|---|" + "---:|" * args.epochs]
    for label, _, _ in settings:
        per_seed = [[json.loads(line)["test_pckh"] for line in
                     (run_dir(args, label, seed) / "metrics.jsonl").read_text().splitlines()] for seed in args.seeds]
        means = [statistics.mean(values) for values in zip(*per_seed)]
        lines.append(f"| {label} | " + " | ".join(f"{100 * m:.2f}" for m in means) + " |")
    return "\n".join(lines + [""])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--train", type=int, default=2000)
    parser.add_argument("--test", type=int, default=400)
    parser.add_argument("--image-size", type=int, default=96)
    parser.add_argument("--input-size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--settings", nargs="+", help="only these setting labels (default: all five)")
    parser.add_argument("--out", type=Path, default=Path("runs/pose_variants"))
    parser.add_argument("--data", type=Path, help="data folder (default: OUT/data, generated when missing)")
    parser.add_argument("--results", type=Path, default=Path("docs/results/pose"))
    args = parser.parse_args(argv)
    args.data = args.data or args.out / "data"
    torch.set_num_threads(1)
    started = time.perf_counter()
    args.out.mkdir(parents=True, exist_ok=True)
    if not (args.data / "annot" / "valid.json").is_file():
        print(write_dataset(args.data, train=args.train, test=args.test, seed=0, image_size=args.image_size),
              flush=True)
        (args.out / "data_s.txt").write_text(f"{time.perf_counter() - started:.1f}")
    settings = [s for s in plan(args) if not args.settings or s[0] in args.settings]
    if not settings:
        parser.error(f"--settings matches none of {[s[0] for s in plan(args)]}")
    rows = [run_one(args, label, variant, ring, seed) for seed in args.seeds for label, variant, ring in settings]
    args.results.mkdir(parents=True, exist_ok=True)
    summary = summarise(rows)
    write_csv(rows, args.results / "runs.csv")
    write_csv(summary, args.results / "summary.csv")
    plot(args.results / "pckh_vs_dof.png", summary)
    command = command_line("pose_variants", argv)
    data_s = float((args.out / "data_s.txt").read_text()) if (args.out / "data_s.txt").is_file() else 0.0
    wall = data_s + sum(r["train_s"] for r in rows)
    text = markdown(args, summary, wall, command) + curves(args, settings)
    print(f"this invocation: {(time.perf_counter() - started) / 60:.1f} min")
    write_atomic(args.results / "README.md", lambda tmp: Path(tmp).write_text(text))
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
