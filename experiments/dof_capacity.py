"""Issue 22, block 5: the DoF law where capacity binds. "Accuracy and the number of parameters follow power law as in
the conventional neural network architectures" (the paper, as its review states it), tested with DoF = ring entries
exactly: ResNet-20 on Fashion-MNIST with BatchNorm without affine parameters (``model.kwargs.norm_affine=false``)
and the stem and classifier generated too, so nothing trainable is left outside the ring. The plan, fixed before
the first run: docs/results/equal_dof_plan.md (block 5).

Sizes: 7 geometric ring sizes from 80 to 8,000 entries, 3 seeds each, plus the matching dense model (affine-free BN).
Stages, each resumable (finished runs reused, killed runs resumed):

    python experiments/dof_capacity.py lr      # seed 0 of ring 80, ring 8,000 and dense at every lr of the grid
    python experiments/dof_capacity.py seeds   # every size at the lr of its nearer end, dense at its own; seeds 0-2
    python experiments/dof_capacity.py fit     # the reading fixed in the plan (also written when seeds completes)

The score is the final-epoch validation top-1; each final model is scored once on the test set.
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import statistics
import sys
from pathlib import Path

import torch

from results_table import pyplot, save_figure, write_markdown
from stats import line_fit, mean_ci, saturating_fit
from validation import (add_arguments, ladder_grid, landed_rows, landed_scores, overrides, run_plan,
                        run_while_grids_widen, schedule_text, slug)

from modelring.atomic import write_atomic

SIZES = tuple(round(80 * 10 ** (k / 3)) for k in range(7))  # 80, 172, 371, 800, 1,724, 3,713, 8,000
ENDS = (SIZES[0], SIZES[-1])
BASE = (0.05, 0.1, 0.2, 0.4)
LADDER = (0.025, 0.05, 0.1, 0.2, 0.4, 0.8)  # one octave past a winning edge (the plan's amendment)
SEEDS = (0, 1, 2)
GENERATED = {"model.kwargs.norm_affine": False, "ring.include": ["*.weight", "*.bias"], "ring.exclude": [],
             "ring.strict": False}  # strict=False: a ring of 80 entries is meant as 80 entries


def arm(size: int | None) -> dict:
    """Settings (without lr) of a ring of ``size`` entries, or of the dense model (None)."""
    if size is None:
        return {"method": "dense", "model.kwargs.norm_affine": False}
    return {**GENERATED, "ring.size": size}


def name(size: int | None) -> str:
    return "dense" if size is None else f"ring {size}"


def label(size: int | None, lr: float) -> str:
    return slug(f"{name(size)}, lr {lr:g}")


def lr_grid(size: int | None, scores: dict[str, float]) -> tuple[list[float], float | None]:
    """The grid of an end (or dense) so far and its chosen lr: highest final validation top-1 at seed 0, ties to
    the lower lr, one octave added past a winning edge."""
    return ladder_grid(lambda lr: scores.get(label(size, lr)), BASE, LADDER, higher_is_better=True)


def lr_of(size: int, ends: dict[int, float]) -> float:
    """The lr of the end nearer on a log scale; the middle size (equally near) takes the larger of the two."""
    low, high = (math.log(size / ENDS[0]), math.log(ENDS[1] / size))
    if math.isclose(low, high, rel_tol=1e-9):
        return max(ends.values())
    return ends[ENDS[0]] if low < high else ends[ENDS[1]]


def reading(rows: list[dict], epochs: dict[str, list[dict]]) -> tuple[list[str], dict]:
    """The plan's reading over the landed seeds-stage rows (``epochs``: run -> its per-epoch metrics)."""
    ring = [r for r in rows if r["method"] != "dense"]
    x = [math.log10(float(r["dof"])) for r in ring]
    y = [math.log10(1 - float(r["test_top1"])) for r in ring]
    fit = line_fit(x, y)
    sizes = sorted({int(r["dof"]) for r in ring})
    means = [statistics.fmean(1 - float(r["test_top1"]) for r in ring if int(r["dof"]) == s) for s in sizes]
    floor = saturating_fit([float(s) for s in sizes], means)
    low, high = fit["slope"] - fit["slope_ci"], fit["slope"] + fit["slope_ci"]
    if fit.get("p_lack_of_fit", 1.0) < 0.05:
        verdict = "not a power law here (lack of fit p < 0.05)"
    elif low <= 0 <= high:
        verdict = "no detectable trend"
    else:
        verdict = "power law here (the exponent's interval excludes 0, no detectable lack of fit)"
    bound = []
    for s in sizes:
        gaps = [float(epochs[r["run"]][-1]["train_top1"]) - float(r["val_top1"]) for r in ring if int(r["dof"]) == s]
        bound.append((s, statistics.fmean(gaps)))
    lines = ["## Reading (fixed in the plan)", "",
             f"Least-squares line of log10(test error) against log10(DoF) over {fit['points']} runs: exponent "
             f"{fit['slope']:+.4f} [{low:+.4f}, {high:+.4f}] (95% t, {fit['points'] - 2} df), p {fit['p_slope']:.2g}, "
             f"R² {fit['r2']:.3f}" + (f"; lack of fit F {fit['lack_of_fit_f']:.2f} ({fit['lack_of_fit_df'][0]}, "
                                      f"{fit['lack_of_fit_df'][1]}), p {fit['p_lack_of_fit']:.3g}"
                                      if "p_lack_of_fit" in fit else "") + f": **{verdict}**.", "",
             f"Named alternative on the {len(sizes)} mean errors, error = a + b DoF^-c (a floor) against b DoF^-c: "
             f"floor a = {floor['floor']['a']:.4f}, c = {floor['floor']['c']:.2f}; extra-sum-of-squares F "
             f"{floor['floor_f']:.2f} (1, {len(sizes) - 3}), p {floor['p_floor']:.3g}.", "",
             "Capacity-bound check (train top-1 at the last epoch minus validation top-1, mean over seeds; the plan "
             "calls a size capacity-bound only if this is at most 0.01):", "",
             "| ring entries | mean test error [95% CI] | train - val top-1 | capacity-bound |", "|---|---|---|---|"]
    for (s, gap), mean in zip(bound, means):
        errors = [1 - float(r["test_top1"]) for r in ring if int(r["dof"]) == s]
        m, ci = mean_ci(errors)
        bound_here = "yes" if gap <= 0.01 else "no"
        lines.append(f"| {s:,} | {m:.4f} [{m - ci:.4f}, {m + ci:.4f}] | {gap:+.4f} | {bound_here} |")
    return lines, {"line": fit, "saturating": floor, "verdict": verdict, "train_minus_val": dict(bound)}


def figure(rows: list[dict], fit: dict, path: Path) -> None:
    """Test error against DoF on log-log axes: runs, means with 95% CIs, the fitted power law, the floor law, and
    the dense model as a band."""
    plt = pyplot()
    if plt is None:
        return
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    ring = [r for r in rows if r["method"] != "dense"]
    sizes = sorted({int(r["dof"]) for r in ring})
    for s in sizes:
        errors = [1 - float(r["test_top1"]) for r in ring if int(r["dof"]) == s]
        m, ci = mean_ci(errors)
        ax.errorbar(s, m, yerr=ci, fmt="o", color="C0", capsize=3)
        ax.plot([s] * len(errors), errors, ".", color="C0", alpha=0.35)
    xs = [sizes[0] / 1.2, sizes[-1] * 1.2]
    line = fit["line"]
    ax.plot(xs, [10 ** (line["intercept"] + line["slope"] * math.log10(x)) for x in xs], "--", color="C0",
            label=f"power law: exponent {line['slope']:+.3f}")
    floor = fit["saturating"]["floor"]
    grid = [sizes[0] * (sizes[-1] / sizes[0]) ** (k / 50) for k in range(51)]
    ax.plot(grid, [floor["a"] + floor["b"] * g ** -floor["c"] for g in grid], ":", color="C2",
            label=f"floor law: a {floor['a']:.3f} (p {fit['saturating']['p_floor']:.2g})")
    dense = [1 - float(r["test_top1"]) for r in rows if r["method"] == "dense"]
    if dense:
        m, ci = mean_ci(dense)
        ax.axhspan(m - ci, m + ci, color="C1", alpha=0.25, label=f"dense, 268,058 parameters (n={len(dense)})")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("DoF = ring entries (log scale)")
    ax.set_ylabel("test error, 1 - top-1 (log scale)")
    fig.suptitle("Paper: accuracy and the number of parameters follow a power law\n"
                 "Fashion-MNIST ResNet-20, everything generated (affine-free BN), 3 seeds per size", fontsize=9)
    ax.legend(fontsize=7)
    save_figure(fig, path)


def write_reading(results: Path) -> bool:
    """Write fit.md, fit.json and dof_capacity.png from the landed seeds stage; False until it is complete."""
    rows = landed_rows(results, "seeds")
    if len(rows) < len(SEEDS) * (len(SIZES) + 1):
        return False
    epochs = {r["run"]: _metrics(results, r["run"]) for r in rows}
    lines, fit = reading(rows, epochs)
    out = results / "seeds"
    write_markdown(out / "fit.md", ["# The DoF law where capacity binds: the reading", "", *lines, "",
                                    "Figure: [dof_capacity.png](dof_capacity.png)."])
    write_atomic(out / "fit.json", lambda tmp: Path(tmp).write_text(json.dumps(fit, indent=1)))
    figure(rows, fit, out / "dof_capacity.png")
    return True


def _metrics(results: Path, run: str) -> list[dict]:
    """A seeds-stage run's per-epoch metrics, as committed beside the table."""
    with open(results / "seeds" / "metrics" / f"{run}.csv") as f:
        return list(csv.DictReader(f))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("stage", choices=("lr", "seeds", "fit"))
    add_arguments(parser, "runs/dof_capacity", "docs/results/dof_capacity")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    results = Path(args.results)
    command = "python experiments/dof_capacity.py " + " ".join(argv if argv is not None else sys.argv[1:])
    stage = argparse.Namespace(**{**vars(args), "results": str(results / args.stage)})
    ends = (*ENDS, None)
    if args.stage == "fit":
        if not write_reading(results):
            raise SystemExit("the seeds stage has not landed completely: run `dof_capacity.py seeds` first")
        return 0
    if args.stage == "lr":  # planned again after each pass: a grid that widens gets its new rung
        def plan_of():
            scores = landed_scores(results, "lr", "val_top1")
            return [({"label": label(s, lr), **arm(s), "train.lr": lr}, 0) for s in ends
                    for lr in lr_grid(s, scores)[0]]
        run_while_grids_widen(plan_of, lambda plan: run_stage(
            args, stage, plan, command, "seed 0 of the smallest and largest ring and of dense at every lr of the "
                                        "grid"), limit_runs=args.limit_runs)
        return 0
    scores = landed_scores(results, "lr", "val_top1")
    chosen = {s: lr_grid(s, scores)[1] for s in ends}
    if None in chosen.values():
        raise SystemExit("the lr stage has not chosen an lr for both ends and dense yet: run `dof_capacity.py lr`")
    lrs = {**{s: lr_of(s, chosen) for s in SIZES}, None: chosen[None]}
    plan = [({"label": label(s, lrs[s]), **arm(s), "train.lr": lrs[s]}, seed) for seed in SEEDS
            for s in (*SIZES, None)]
    run_stage(args, stage, plan, command, f"every ring size at the lr of its nearer end ({ENDS[0]}: "
                                          f"{chosen[ENDS[0]]:g}, {ENDS[1]:,}: {chosen[ENDS[1]]:g}) and dense at "
                                          f"{chosen[None]:g}, seeds {list(SEEDS)}")
    write_reading(results)
    return 0


def run_stage(args, stage, plan: list[tuple[dict, int]], command: str, what: str) -> None:
    run_plan(plan, stage, stem=args.stage, title=f"The DoF law where capacity binds ({args.stage})", reference=None,
             command=command, test=True, schedule=overrides(args),
             description=f"{what}; ResNet-20 with affine-free BatchNorm, every weight and bias generated from one "
                         f"ring (DoF = ring entries); {schedule_text(args)}; each final model is scored once on the "
                         "full test set (nothing is chosen on it).")


if __name__ == "__main__":
    sys.exit(main())
