"""Issue 22, block 4: the paper's multi-task claim as a factorial experiment. "the proposed method performs best with
sub-network reuse, new batch-normalization when reusing, and permutation/reflection matrices for destructive weight
sharing". The plan, fixed before the first run: docs/results/multitask_factorial/plan.md.

Cells: sharing {no reuse, reuse + shared BN, reuse + new BN} x permutation {on, off} x reflection {on, off}, RPG
with element-wise wiring and one global ring, every cell at the same DoF (the shared-BN cells hold fewer BatchNorm
parameters, so their ring gets the difference), plus the dense no-reuse model as context. Generated 2D-3D-S-layout
scenes (``modelring make-data multitask``, written on first use): areas 1-4 train, area 6 validates
(``multitask.val_areas``), areas 5a/5b test.

Stages, each resumable (finished runs reused, killed runs resumed):

    python experiments/multitask_factorial.py lr      # per sharing mode (and dense), seed 0, the lr grid on validation
    python experiments/multitask_factorial.py seeds   # every cell at its mode's lr, seeds 0-2, then the ANOVA

The score is the final-epoch validation depth RMSE (lower is better); each final model is scored once on the test
areas, and the three-way ANOVA (test depth RMSE and normal RMSE) is written to seeds/anova.md.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from results_table import command_line, write_markdown
from stats import factorial_anova, holm
from validation import ladder_grid, landed_scores, run_plan, run_while_grids_widen, slug

import modelring as mr
from modelring.atomic import write_atomic
from modelring.config import load_config
from modelring.loop import build_model
from modelring.tasks import get_task

RECIPE = "configs/multitask_rpg.yaml"
MODES = {"no reuse": (False, False), "reuse, shared BN": (True, False), "reuse, new BN": (True, True)}
RING = 4000  # entries of the no-reuse and new-BN cells; the shared-BN cells get this plus their missing BN
BASE = (0.025, 0.05, 0.1)
LADDER = (0.00625, 0.0125, 0.025, 0.05, 0.1, 0.2, 0.4)
SEEDS = (0, 1, 2)
DATA = {"train": 1250, "test": 300, "image_size": 48, "seed": 0}  # scenes: 250 per training area, 150 per test area
RESPONSES = ("depth_rmse", "normal_rmse")
FACTORS = ("sharing", "permutation", "reflection")


def schedule(args) -> list[str]:
    """The overrides every run shares."""
    return [f"data.root={args.data}", "multitask.val_areas=[area_6]", f"data.image_size={DATA['image_size']}",
            f"train.epochs={args.epochs}", f"train.threads={args.threads}", "train.progress=false",
            "out.tensorboard=false", *args.set]


def model_keys(mode: str) -> dict:
    reuse, new_norm = MODES[mode]
    return {"model.kwargs.reuse": reuse, "model.kwargs.new_norm": new_norm}


def cells(args) -> dict[str, dict]:
    """Label -> settings (without lr and seed) of the 12 RPG cells (equal DoF) and dense; with each cell's factor
    levels under ``levels``."""
    target = _dof(args, {**model_keys("no reuse"), "ring.size": RING})
    out = {}
    for mode in MODES:
        free = _dof(args, {**model_keys(mode), "ring.size": RING}) - RING
        for permute in (True, False):
            for reflect in (True, False):
                label = f"{mode}, perm {'on' if permute else 'off'}, refl {'on' if reflect else 'off'}"
                out[label] = {**model_keys(mode), "ring.size": target - free, "ring.permute": permute,
                              "ring.reflect": reflect, "levels": (mode, permute, reflect)}
    out["dense"] = {**model_keys("no reuse"), "method": "dense", "levels": None}
    return out


def _dof(args, keys: dict) -> int:
    cfg = load_config(RECIPE, schedule(args) + [f"{k}={json.dumps(v)}" for k, v in keys.items()])
    return mr.count_params(build_model(get_task("multitask"), cfg, None)).dof


def mode_of(cell: str) -> str:
    return "dense" if cell == "dense" else cell.split(", perm")[0]


def reference(mode: str) -> str:
    """The cell that chooses a sharing mode's lr: permutation and reflection on (the paper's setting); dense."""
    return "dense" if mode == "dense" else f"{mode}, perm on, refl on"


def label(cell: str, lr: float) -> str:
    """A run's label: its cell and lr (so the seeds stage reuses the lr stage's seed-0 run of a reference cell)."""
    return slug(f"{cell}, lr {lr:g}")


def lr_grid(mode: str, scores: dict[str, float]) -> tuple[list[float], float | None]:
    """The mode's lrs so far and its chosen lr: lowest final validation depth RMSE at seed 0 (ties to the lower)."""
    return ladder_grid(lambda lr: scores.get(label(reference(mode), lr)), BASE, LADDER, higher_is_better=False)


def setting(cell: str, keys: dict, lr: float) -> dict:
    return {"label": label(cell, lr), **{k: v for k, v in keys.items() if k != "levels"}, "train.lr": lr}


def anova_lines(rows: list[dict], levels: dict[str, tuple]) -> tuple[list[str], dict]:
    """The ANOVA of each response over the RPG cells (``levels``: run label -> its factor levels; test numbers of
    the final models, validation beside), Holm over the main effects of both test responses (the plan's primary
    tests)."""
    lines, out = [], {}
    for split in ("test", "val"):
        for response in RESPONSES:
            obs = [(levels[r["label"]], float(r[f"{split}_{response}"])) for r in rows if r["label"] in levels]
            out[f"{split}_{response}"] = factorial_anova(obs, FACTORS)
    primary = [row for response in RESPONSES for row in out[f"test_{response}"][:3]]
    for row, p in zip(primary, holm([row["p"] for row in primary])):
        row["p_holm"] = p
    for name, table in out.items():
        lines += ["", f"### {name.replace('_', ' ')}", "",
                  "| effect | df | SS | MS | F | p | p (Holm, main effects of the test responses) | partial eta² |",
                  "|---|---|---|---|---|---|---|---|"]
        for row in table:
            if row["effect"] == "error":
                lines.append(f"| error | {row['df']} | {row['ss']:.5f} | {row['ms']:.6f} | | | | |")
                continue
            holm_p = f"{row['p_holm']:.3f}" if "p_holm" in row else ""
            lines.append(f"| {row['effect']} | {row['df']} | {row['ss']:.5f} | {row['ms']:.6f} | {row['f']:.2f} | "
                         f"{row['p']:.3f} | {holm_p} | {row['partial_eta2']:.3f} |")
    return lines, out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("stage", choices=("lr", "seeds"))
    parser.add_argument("--data", default="data/multitask_factorial")
    parser.add_argument("--runs", default="runs/multitask_factorial")
    parser.add_argument("--results", default="docs/results/multitask_factorial")
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--limit-runs", type=int, default=None, help="stop after this many runs of the plan")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="more config overrides for every run (tests: a smaller model); named in the tables")
    args = parser.parse_args(argv)
    args.command = command_line("multitask_factorial", argv)
    torch.set_num_threads(args.threads)
    if not (Path(args.data) / "area_6").is_dir():
        from modelring.tasks.multitask.synth import write_dataset

        print(write_dataset(Path(args.data), **DATA), flush=True)
    every, results = cells(args), Path(args.results)
    stage = argparse.Namespace(**{**vars(args), "results": str(results / args.stage)})
    modes = [*MODES, "dense"]
    if args.stage == "lr":  # planned again after each pass: a grid that widens gets its new rung
        def plan_of():
            scores = landed_scores(results, "lr", "val_depth_rmse")
            return [(setting(reference(mode), every[reference(mode)], lr), 0) for mode in modes
                    for lr in lr_grid(mode, scores)[0]]
        run_while_grids_widen(plan_of, lambda plan: run_stage(
            args, stage, plan, "seed 0 of each sharing mode (permutation and reflection on) and of dense at every "
                               "lr of its grid"), limit_runs=args.limit_runs)
        return 0
    scores = landed_scores(results, "lr", "val_depth_rmse")
    lrs = {mode: lr_grid(mode, scores)[1] for mode in modes}
    if None in lrs.values():
        raise SystemExit("the lr stage has not chosen an lr for every sharing mode yet: run `multitask_factorial.py "
                         "lr` again")
    plan = [(setting(cell, keys, lrs[mode_of(cell)]), seed) for seed in SEEDS for cell, keys in every.items()]
    chosen = ", ".join(f"{mode} {lrs[mode]:g}" for mode in modes)
    rows = run_stage(args, stage, plan, f"every cell at its sharing mode's lr ({chosen}), seeds {list(SEEDS)}")
    if len(rows) == len(plan):  # every run landed: the analysis the plan fixed
        levels = {label(cell, lrs[mode_of(cell)]): keys["levels"] for cell, keys in every.items()
                  if keys["levels"] is not None}
        lines, tables = anova_lines(rows, levels)
        write_markdown(results / "seeds" / "anova.md",
                       ["# Multi-task factorial: three-way ANOVA", "", f"Command: `{args.command}`", "",
                        "Fixed-effects ANOVA (`stats.factorial_anova`) of the 12 RPG cells x "
                        f"{len(SEEDS)} seeds; responses in metres (depth) and unit-vector RMSE (normals); the test "
                        "numbers are the final models' on areas 5a/5b (primary), the validation ones area 6's.",
                        *lines])
        write_atomic(results / "seeds" / "anova.json", lambda tmp: Path(tmp).write_text(json.dumps(tables, indent=1)))
    return 0


def run_stage(args, stage, plan: list[tuple[dict, int]], what: str) -> list[dict]:
    return run_plan(plan, stage, stem=args.stage, title=f"Multi-task factorial ({args.stage})", reference=None,
                    command=args.command, test=True, recipe=RECIPE, schedule=schedule(args),
                    description=f"{what}; `multitask_net` (width 16, 3 levels) on the scenes in `{args.data}` "
                                f"(written when missing: {DATA['train']:,} training scenes in areas 1-4 and 6, area 6 "
                                f"held out for validation, {DATA['test']} test scenes in areas 5a/5b, "
                                f"{DATA['image_size']} px), {args.epochs} epochs, SGD Nesterov, cosine; RPG cells: one "
                                f"global ring, element-wise wiring, {RING:,} entries (+ the shared-BN cells' missing "
                                "BatchNorm parameters), stem conv and 1x1 heads free; scored on validation "
                                "(final-epoch depth RMSE, lower is better); each final model is scored once on the "
                                "test areas."
                                + (f" Overrides: {' '.join(args.set)}." if args.set else ""))


if __name__ == "__main__":
    sys.exit(main())
