"""Issue 25: the shared driver of the fine-tuning comparisons (``finetune_text.py``, ``finetune_vision.py``).

A bed says what is pretrained and fine-tuned: the recipe, the overrides of the old (pretraining) and the new
(fine-tuning) data, the arms (label -> settings at equal trainable parameters), each arm's first lr grid. The
driver runs three resumable stages, one run at a time (in the venv with peft, ``.venv-hf``):

- ``pretrain``: the base, dense, one run (seed 0);
- ``lr``: seed 0 of every arm on an lr ladder, widened one rung past a winning edge (``validation.ladder_grid``),
  planned again after each pass until no grid widens;
- ``seeds``: every arm at its lr, the bed's seeds.

Every finished run is scored once on the new data's test split (``validation.test_numbers``) and on the old data's
evaluation split (forgetting, ``forgetting.csv`` beside the tables).
"""
from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from validation import final_model, ladder_grid, landed_scores, run_plan, run_while_grids_widen, slug

from modelring.atomic import write_atomic
from modelring.config import load_config
from modelring.sweep import selection_score


@dataclass
class Bed:
    """What a fine-tuning comparison trains (see the module docstring)."""

    name: str
    recipe: str
    old: Callable[[argparse.Namespace], list[str]]      # args -> overrides of the pretraining data and schedule
    new: Callable[[argparse.Namespace], list[str]]      # args -> overrides of the fine-tuning data and schedule
    arms: Callable[[list[str], str], dict[str, dict]]   # (new overrides, base file) -> label -> settings
    base_lrs: Callable[[str], tuple[float, ...]]        # arm -> its first lr grid
    pretrain: dict                                      # the base run's settings (method, lr)
    ladder: tuple[float, ...]
    seeds: tuple[int, ...] = (0, 1, 2)
    describe: Callable[[argparse.Namespace], str] = field(default=lambda args: "")


def label(arm: str, lr: float) -> str:
    return slug(f"{arm}, lr {lr:g}")


def metric_of(bed: Bed, overrides: list[str]) -> tuple[str, bool]:
    """The selection metric of the bed's recipe under ``overrides`` (``bpb``, ``top1``) and whether higher wins."""
    score, higher = selection_score(load_config(bed.recipe, overrides))
    return score.removeprefix("val_").removeprefix("test_"), higher


def lr_grid(bed: Bed, arm: str, landed: dict[str, float], higher: bool) -> tuple[list[float], float | None]:
    return ladder_grid(lambda lr: landed.get(label(arm, lr)), bed.base_lrs(arm), bed.ladder, higher_is_better=higher)


def forgetting(run: Path, bed: Bed, args, metric: str) -> dict:
    """The final model's score on the old data's evaluation split, kept in the run's forgetting.json."""
    path = run / "forgetting.json"
    if not path.is_file():
        from modelring.loop import evaluate_on_split

        numbers = {f"old_{metric}": evaluate_on_split(load_config(bed.recipe, bed.old(args)),
                                                      final_model(run).eval())[metric]}
        write_atomic(path, lambda tmp: Path(tmp).write_text(json.dumps(numbers)))
    return json.loads(path.read_text())


def write_forgetting(rows: list[dict], base_score: float, metric: str, out: Path) -> None:
    lines = [f"label,seed,dof,val_{metric},old_{metric},forgetting"]
    lines += [f"{r['label']},{r['seed']},{r['dof']},{r[f'val_{metric}']:.6f},{r[f'old_{metric}']:.6f},"
              f"{r[f'old_{metric}'] - base_score:.6f}" for r in rows]
    out.mkdir(parents=True, exist_ok=True)
    write_atomic(out / "forgetting.csv", lambda tmp: Path(tmp).write_text("\n".join(lines) + "\n"))


def add_arguments(parser: argparse.ArgumentParser, stem: str) -> None:
    parser.add_argument("stage", choices=("pretrain", "lr", "seeds"))
    parser.add_argument("--runs", default=f"runs/{stem}")
    parser.add_argument("--results", default=f"docs/results/{stem}")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--arms", nargs="+", help="only these arm labels")
    parser.add_argument("--limit-runs", type=int, default=None, help="stop after this many runs of the plan")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="more config overrides for every run (pretraining too), named in the tables")


def run_stage(bed: Bed, args, command: str) -> int:
    """Run ``args.stage`` of the bed's comparison (see the module docstring)."""
    torch.set_num_threads(args.threads)
    results, runs = Path(args.results), Path(args.runs)
    if args.stage == "pretrain":
        stage = argparse.Namespace(**{**vars(args), "results": str(results / "pretrain")})
        run_plan([({"label": "pretrain", **bed.pretrain}, 0)], stage, stem="pretrain",
                 title=f"Fine-tuning ({bed.name}): the pretrained base", reference=None, command=command,
                 recipe=bed.recipe, schedule=bed.old(args),
                 description=f"the base: {bed.pretrain} on the old data; scored on its validation split")
        return 0
    base = runs / "pretrain_seed0" / "model.safetensors"
    if not base.is_file():
        raise SystemExit(f"the base is not trained yet: run `{command.split()[1]} pretrain` first")
    new = bed.new(args)
    metric, higher = metric_of(bed, new)
    base_report = json.loads((runs / "pretrain_seed0" / "report.json").read_text())
    every = {k: v for k, v in bed.arms(new, str(base)).items() if not args.arms or k in args.arms}
    unknown = sorted(set(args.arms or []) - set(every))
    if unknown:
        raise SystemExit(f"no arm {unknown}; the arms are {sorted(bed.arms(new, str(base)))}")
    stage = argparse.Namespace(**{**vars(args), "results": str(results / args.stage)})
    description = (f"{bed.describe(args)}; the base scores {base_report[f'val_{metric}']:.4f} ({metric}) on the old "
                   f"data's validation split; each final model is scored once on the new data's test split and on "
                   "the old data (forgetting.csv)")

    def run(plan: list[tuple[dict, int]]) -> None:
        rows = run_plan(plan, stage, stem=args.stage, title=f"Fine-tuning ({bed.name}) at equal trainable parameters "
                        f"({args.stage})", reference=None, command=command, test=True, recipe=bed.recipe,
                        schedule=new, description=description)
        rows = [{**r, **forgetting(runs / r["run"], bed, args, metric)} for r in rows]
        write_forgetting(rows, base_report[f"val_{metric}"], metric, results / args.stage)

    if args.stage == "lr":
        def plan_of():
            landed = landed_scores(results, "lr", f"val_{metric}")
            return [({"label": label(arm, lr), **keys, "train.lr": lr}, 0) for arm, keys in every.items()
                    for lr in lr_grid(bed, arm, landed, higher)[0]]
        run_while_grids_widen(plan_of, run, limit_runs=args.limit_runs)
        return 0
    landed = landed_scores(results, "lr", f"val_{metric}")
    chosen = {arm: lr_grid(bed, arm, landed, higher)[1] for arm in every}
    missing = sorted(arm for arm, lr in chosen.items() if lr is None)
    if missing:
        raise SystemExit(f"the lr stage has not chosen an lr for {missing} yet: run the lr stage again")
    run([({"label": label(arm, chosen[arm]), **keys, "train.lr": chosen[arm]}, seed) for seed in bed.seeds
         for arm, keys in every.items()])
    return 0
