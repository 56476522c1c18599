"""Issue 22, block 3: the paper's pose claim as it states it, "RPG outperforms CPM, which shares all parameters
across sub-networks" (PCKh@0.5), on a bed that can answer it. The plan, fixed before the first run:
docs/results/pose_claim/plan.md.

The bed: generated MPII-layout data (``modelring make-data pose``, seed 0, written on first use), 64 px crops,
32 x 32 heatmaps (stride 2), a validation split of 400 persons held out of the training annotations
(``data.val_size``) apart from the test split (``annot/valid.json``, 1,200 persons), 30 epochs, Adam, cosine,
bf16 autocast. Arms at equal DoF:

- ``cpm``: one refinement sub-network applied at stages 2-4, every parameter shared, BatchNorm included
  (``pose.reuse=true``, ``pose.new_norm=false``), dense;
- ``rpg``: every stage its own sub-network, all generated from one global ring sized so that the DoF equal cpm's.

Stages, each resumable (finished runs reused, killed runs resumed), one after the other:

    python experiments/pose_claim.py pilot   # seed 0 of both arms at Adam lr 1e-3, 2e-3, 4e-3 (widened past an edge)
    python experiments/pose_claim.py seeds   # both arms at their lr, seeds 0-3; then up to 6 if the MDE rule says

The score is the final-epoch validation PCKh@0.5 (higher is better); each final model is scored once on the test
split. Writes docs/results/pose_claim/<stage>/.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from claims import pooled_sigma
from results_table import command_line
from stats import mde
from validation import ladder_grid, landed_rows, landed_scores, run_plan, run_while_grids_widen, slug

import modelring as mr
from modelring.config import load_config
from modelring.loop import build_model
from modelring.tasks import get_task

RECIPE = "configs/pose_independent.yaml"
BASE = (1e-3, 2e-3, 4e-3)
LADDER = (2.5e-4, 5e-4, 1e-3, 2e-3, 4e-3, 8e-3, 1.6e-2)  # an octave apart: a grid widens past a winning edge
SEEDS = (0, 1, 2, 3)
MAX_SEEDS = 6
MDE_TARGET = 0.02  # PCKh: the main comparison runs only if the pooled sigma reaches it at <= MAX_SEEDS per arm
REFERENCE = "cpm"
DATA = {"train": 4400, "test": 1200, "image_size": 96, "seed": 0}  # persons (one per image)
VAL_PERSONS = 400  # held out of the training persons for validation


def schedule(args) -> list[str]:
    """The overrides every run shares."""
    return [f"data.root={args.data}", f"data.val_size={VAL_PERSONS}", "pose.input_size=64", "pose.heatmap_size=32",
            f"train.epochs={args.epochs}", "train.amp=true", f"train.threads={args.threads}",
            "train.progress=false", "out.tensorboard=false", *args.set]


def arm_keys(args) -> dict[str, dict]:
    """Label -> settings (without lr and seed); rpg's ring makes its DoF exactly cpm's."""
    cpm = {"pose.reuse": True, "pose.new_norm": False, "method": "dense"}
    rpg = {"pose.reuse": False, "method": "rpg"}
    dof = mr.count_params(_model(args, cpm)).dof
    free = mr.count_params(_model(args, {**rpg, "ring.size": 1000})).free
    return {"cpm": cpm, "rpg": {**rpg, "ring.size": dof - free}}


def _model(args, keys: dict):
    """The model ``keys`` build under the schedule, the method applied (no data read)."""
    cfg = load_config(RECIPE, schedule(args) + [f"{k}={v}" for k, v in keys.items()])
    return build_model(get_task("pose"), cfg, None)


def label(arm: str, lr: float) -> str:
    return slug(f"{arm}, lr {lr:g}")


def lr_grid(arm: str, scores: dict[str, float]) -> tuple[list[float], float | None]:
    """The arm's lrs so far and its chosen lr: highest final validation PCKh at seed 0 (ties to the lower lr)."""
    return ladder_grid(lambda lr: scores.get(label(arm, lr)), BASE, LADDER, higher_is_better=True)


def seeds_for(values: dict[str, list[float]]) -> tuple[int | None, float]:
    """(seeds per arm for the main comparison, or None when even ``MAX_SEEDS`` misses ``MDE_TARGET``; the sigma
    pooled over the arms' validation PCKh) once every arm has ``len(SEEDS)`` seeds."""
    sigma = pooled_sigma(list(values.values()))
    n = next((n for n in range(len(SEEDS), MAX_SEEDS + 1) if mde(sigma, n) <= MDE_TARGET), None)
    return n, sigma


def ensure_data(root: Path) -> None:
    """Write the bed's data once (deterministic for its seed)."""
    if not (root / "annot" / "valid.json").is_file():
        from modelring.tasks.pose.synth import write_dataset

        print(write_dataset(root, **DATA), flush=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("stage", choices=("pilot", "seeds"))
    parser.add_argument("--data", default="data/pose_claim")
    parser.add_argument("--runs", default="runs/pose_claim")
    parser.add_argument("--results", default="docs/results/pose_claim")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--limit-runs", type=int, default=None, help="stop after this many runs of the plan")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="more config overrides for every run (tests: a smaller model); named in the tables")
    args = parser.parse_args(argv)
    args.command = command_line("pose_claim", argv)
    torch.set_num_threads(args.threads)
    ensure_data(Path(args.data))
    arms, results = arm_keys(args), Path(args.results)
    stage = argparse.Namespace(**{**vars(args), "results": str(results / args.stage)})
    if args.stage == "pilot":  # planned again after each pass: a grid that widens gets its new rung
        def plan_of():
            scores = landed_scores(results, "pilot", "val_pckh")
            return [({"label": label(arm, lr), **keys, "train.lr": lr}, 0) for arm, keys in arms.items()
                    for lr in lr_grid(arm, scores)[0]]
        run_while_grids_widen(plan_of, lambda plan: run_stage(
            args, stage, plan, None, "seed 0 of both arms at every Adam lr of its grid"), limit_runs=args.limit_runs)
        return 0
    scores = landed_scores(results, "pilot", "val_pckh")
    lrs = {arm: lr_grid(arm, scores)[1] for arm in arms}
    if None in lrs.values():
        raise SystemExit("the pilot has not chosen an lr for every arm yet: run `pose_claim.py pilot` again")
    settings = {arm: {"label": label(arm, lrs[arm]), **keys, "train.lr": lrs[arm]} for arm, keys in arms.items()}
    plan = [(settings[arm], seed) for seed in SEEDS for arm in arms]
    reference = settings[REFERENCE]["label"]
    run_stage(args, stage, plan, reference, f"both arms at their lr, seeds {list(SEEDS)} (seed 0 is the pilot's run)")
    values = {arm: [float(r["val_pckh"]) for r in landed_rows(results, "seeds") if r["label"] == settings[arm]["label"]]
              for arm in arms}
    n, sigma = seeds_for(values)
    if n is None:
        print(f"pooled validation sigma {sigma:.4f}: the MDE at {MAX_SEEDS} seeds per arm is "
              f"{mde(sigma, MAX_SEEDS):.4f} > {MDE_TARGET}: the plan stops here (no main comparison)", flush=True)
        return 0
    plan += [(settings[arm], seed) for seed in range(len(SEEDS), n) for arm in arms]
    run_stage(args, stage, plan, reference, f"both arms at their lr, seeds 0-{n - 1} ({n} from the pooled sigma "
                                            f"{sigma:.4f}: MDE <= {MDE_TARGET} PCKh)")
    return 0


def run_stage(args, stage, plan: list[tuple[dict, int]], reference: str | None, what: str) -> None:
    run_plan(plan, stage, stem=args.stage, title=f"Pose: RPG against CPM-style full sharing ({args.stage})",
             reference=reference,
             command=args.command, test=True, recipe=RECIPE, schedule=schedule(args),
             description=f"{what}; `pose_cpm` (4 stages, width 32) on the MPII-layout data in `{args.data}` "
                         f"(written when missing: {DATA['train']:,} training persons, {DATA['test']:,} test persons; "
                         f"{VAL_PERSONS} training persons held out for validation), 64 px crops, 32 x 32 heatmaps, "
                         f"{args.epochs} epochs, Adam, cosine, bf16 autocast; scored on validation (final-epoch "
                         "PCKh@0.5, higher is better); each final model is scored once on the test split (nothing is "
                         "chosen on it)." + (f" Overrides: {' '.join(args.set)}." if args.set else ""))


if __name__ == "__main__":
    sys.exit(main())
