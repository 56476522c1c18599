"""Issue 22, block 2: RPG against conventional networks of the same size, as the paper compares (Fashion-MNIST,
ResNet-20). The plan, fixed before the first run: docs/results/equal_dof_plan.md.

At each budget (the DoF of the integer-width thin ResNet-20: width 2 -> 4,456, width 3 -> 9,811), every arm has
that many trainable parameters, counted the same way (BatchNorm, stem and classifier included):

- ``rpg``: one global ring (element-wise wiring) of budget - free entries, stem and classifier free;
- ``hashednets``: the same ring entries split over one ring per layer, independent sampling;
- ``thin``: dense ResNet-20 at that width (the budget itself);
- ``shallow``: dense ResNet-8 at width 4 / 6 (+11% DoF, reported);
- ``prune-global`` / ``prune-layerwise``: dense ResNet-20 pruned to the ring's entries of the weights RPG
  generates, ``prune.at`` from {0.3, 0.5};
- ``dense`` (context) and ``resnet56 rpg`` (a deeper RPG with the DoF of dense ResNet-20, the paper's ResNet34-RPG
  vs ResNet-18).

Two stages, each resumable (finished runs are reused, killed ones resume) and run seed-major:

    python experiments/equal_size.py lr      # seed 0 of every arm at every lr (and prune.at): choices on validation
    python experiments/equal_size.py seeds   # the chosen setting of every arm, seeds 0-4 (RPG/HashedNets 3%: 0-7)

``--arms`` and ``--budgets`` restrict a stage (the issue's cut list). Writes docs/results/equal_size/.
"""
from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import torch

from validation import add_arguments, run_plan, schedule_text, slug

import modelring as mr
from modelring.config import load_config
from modelring.methods import apply_method

RECIPE = "configs/fmnist_resnet20_rpg.yaml"
BUDGETS = {"1%": 2, "3%": 3}  # budget -> width of the thin ResNet-20 whose DoF it is
SHALLOW_WIDTH = {"1%": 4, "3%": 6}
LRS = (0.1, 0.2, 0.4)
PRUNE_AT = (0.3, 0.5)
SEEDS = (0, 1, 2, 3, 4)
EXTRA_SEEDS = {"rpg 3%": (5, 6, 7), "hashednets 3%": (5, 6, 7)}  # the block's one pre-registered comparison


def dense_dof(name: str, **kwargs) -> int:
    return sum(p.numel() for p in mr.create_model(name, num_classes=10, in_chans=1, **kwargs).parameters())


def free_dof(name: str) -> int:
    """Trainable parameters RPG leaves free in ``name`` (stem conv, classifier, BatchNorm)."""
    cfg = load_config(RECIPE, ["ring.size=1000", "ring.strict=false", f"model.name={name}"])
    return mr.count_params(apply_method(mr.create_model(name, num_classes=10, in_chans=1), cfg)).free


def arms(budgets) -> dict[str, dict]:
    """Label -> settings of every arm (without lr), each with exactly its budget's DoF but ``shallow``."""
    out, free = {}, free_dof("resnet20")
    for budget in budgets:
        width = BUDGETS[budget]
        ring = dense_dof("resnet20", width=width) - free
        out[f"rpg {budget}"] = {"ring.size": ring}
        out[f"hashednets {budget}"] = {"method": "hashednets", "ring.size": ring}
        out[f"thin {budget}"] = {"method": "dense", "model.kwargs.width": width}
        out[f"shallow {budget}"] = {"method": "dense", "model.name": "resnet8",
                                    "model.kwargs.width": SHALLOW_WIDTH[budget]}
        for scope in ("global", "layerwise"):
            out[f"prune-{scope} {budget}"] = {"method": f"prune-{scope}", "prune.keep": ring}
    out["dense"] = {"method": "dense"}
    out["resnet56 rpg"] = {"model.name": "resnet56", "ring.size": dense_dof("resnet20") - free_dof("resnet56")}
    return out


def candidates(chosen_arms: dict[str, dict]) -> dict[str, list[dict]]:
    """Arm -> its settings at every lr (pruning arms also at every prune.at), labelled by arm and choice."""
    out = {}
    for label, keys in chosen_arms.items():
        ats = PRUNE_AT if label.startswith("prune") else (None,)
        out[label] = [{"label": slug(f"{label}, lr {lr}" + (f", at {at}" if at is not None else "")), **keys,
                       "train.lr": lr, **({"prune.at": at} if at is not None else {})} for lr in LRS for at in ats]
    return out


def chosen(results: Path, chosen_arms: dict[str, dict]) -> dict[str, dict]:
    """Per arm whose whole lr stage has landed: the setting with the highest final-epoch validation top-1 at seed 0
    (ties to the lower lr, then the earlier prune.at). Its seed-0 run is reused by the seeds stage."""
    path = results / "lr" / "lr.csv"
    scores = {r["label"]: float(r["val_top1"]) for r in csv.DictReader(path.open())} if path.is_file() else {}
    return {arm: max(settings, key=lambda s: (scores[s["label"]], -s["train.lr"], -s.get("prune.at", 0)))
            for arm, settings in candidates(chosen_arms).items() if all(s["label"] in scores for s in settings)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("stage", choices=("lr", "seeds"))
    add_arguments(parser, "runs/equal_size", "docs/results/equal_size")
    parser.add_argument("--budgets", nargs="+", choices=tuple(BUDGETS), default=list(BUDGETS))
    parser.add_argument("--arms", nargs="+", help="only these arm labels (e.g. 'rpg 3%%' 'hashednets 3%%')")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    every = arms(args.budgets)
    chosen_arms = {k: v for k, v in every.items() if not args.arms or k in args.arms}
    results, runs = Path(args.results), Path(args.runs)
    command = "python experiments/equal_size.py " + " ".join(argv if argv is not None else sys.argv[1:])
    if args.stage == "lr":
        plan = [(setting, 0) for settings in candidates(chosen_arms).values() for setting in settings]
        title, what = "Equal size: lr (and prune.at) on validation, seed 0", "every arm at every lr"
    else:
        picks = chosen(results, chosen_arms)
        missing = sorted(set(chosen_arms) - set(picks))
        if missing:
            raise SystemExit(f"the lr stage has not landed for {missing}: run `equal_size.py lr` first")
        plan = [(picks[arm], seed) for seed in (*SEEDS, 5, 6, 7) for arm in chosen_arms
                if seed in SEEDS or seed in EXTRA_SEEDS.get(arm, ())]
        title, what = "Equal size: RPG against conventional nets of the same DoF", "every arm at its chosen lr"
    stage_args = argparse.Namespace(**{**vars(args), "runs": str(runs), "results": str(results / args.stage)})
    run_plan(plan, stage_args, stem=args.stage, title=title, reference=None, command=command, test=True,
             description=f"{what}; {schedule_text(args)}; each final model is scored once on the full test set "
                         "(nothing is chosen on it).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
