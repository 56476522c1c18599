"""Issue 24, item 2: what ``convert`` should generate in a transformer, and which scale rule trains. The plan, fixed
before the first run: docs/results/lm_plan.md (item 2).

Char-level ``gpt_tiny`` (4 x 192, tied embeddings, 1.88 M parameters) on Shakespeare's 42 works
(``bash scripts/fetch_text.sh shakespeare``), AdamW, cosine; every RPG arm has the same number of ring entries, 5%
of the block Linear weights (what the default targets generate), so the target arms differ in what is generated,
not in ring size (their DoF differ by what stays free, and the tables say so):

- ``linear`` (reference): every block Linear weight (attention qkv and proj, MLP fc and proj); embeddings,
  LayerNorms and biases free; ``ring.scale`` null (c_i = 1: the ring at the layers' fan-in RMS);
- ``linear+embedding``: the same plus the (tied) token embedding;
- ``attention``: the attention weights only (the MLP stays dense);
- ``linear, fan_in`` and ``linear, std 0.02``: the reference's targets with Kaiming fan-in scales, and with a ring
  of std 0.02 (the dense GPT's initialisation) and c_i = 1;
- ``dense``: context.

Stages, each resumable (finished runs reused, killed runs resumed), run one after the other:

    python experiments/lm_targets.py pilot   # seed 0 of every arm at lr 3e-4, 1e-3, 3e-3; again while a grid widens
    python experiments/lm_targets.py sigma   # the reference at its lr, seeds 1-3: the seed sigma
    python experiments/lm_targets.py main    # every arm at its lr, n seeds (n from sigma: MDE <= 0.02 bpb, 3..6)

The score is validation bits per byte (final epoch; lower is better); each final model is scored once on the test
block. Writes docs/results/lm_targets/<stage>/.
"""
from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch

from results_table import command_line
from stats import mde
from validation import ladder_grid, landed_rows, landed_scores, run_plan, run_while_grids_widen, slug

import modelring as mr
from modelring.config import load_config

RECIPE = "configs/shakespeare_gpt_rpg.yaml"
LADDER = (3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2)  # the lrs a grid may reach, half a decade apart
BASE = (3e-4, 1e-3, 3e-3)  # every arm's first grid; widened by one rung past an edge that wins, to the ladder's end
LINEAR = ["blocks.*.attn.*.weight", "blocks.*.mlp.*.weight"]
RING_FRACTION = 0.05
REFERENCE = "linear"
SIGMA_SEEDS = (1, 2, 3)
MDE_TARGET = 0.02  # bits per byte
MAX_SEEDS = 6


def ring_entries(schedule: list[str]) -> int:
    """5% of the block Linear weights of the recipe's model under ``schedule`` (one integer for every RPG arm)."""
    model = load_config(RECIPE, schedule)["model"]
    built = mr.create_model(model["name"], **(model.get("kwargs") or {}))
    weights = sum(p.numel() for n, p in built.named_parameters() if n.startswith("blocks.") and p.dim() == 2)
    return round(RING_FRACTION * weights)


def arms(schedule: list[str]) -> dict[str, dict]:
    """Label -> settings (without lr and seed)."""
    ring = {"ring.size": ring_entries(schedule), "ring.exclude": None}
    return {"linear": {**ring, "ring.include": LINEAR},
            "linear+embedding": {**ring, "ring.include": [*LINEAR, "tok_emb.weight"]},
            "attention": {**ring, "ring.include": ["blocks.*.attn.*.weight"]},
            "linear, fan_in": {**ring, "ring.include": LINEAR, "ring.scale": "fan_in"},
            "linear, std 0.02": {**ring, "ring.include": LINEAR, "ring.init_std": 0.02},
            "dense": {"method": "dense"}}


def schedule(args) -> list[str]:
    """The overrides every run shares (``lm_schedule`` of ``args.root`` and ``args.tokens``)."""
    return lm_schedule(args, args.root, args.tokens)


def lm_schedule(args, root: str, tokens: int) -> list[str]:
    """The overrides of a run on the corpus ``root``: ``tokens`` as ``args.epochs`` epochs of windows of
    ``args.context`` tokens, ``args.threads`` threads, no progress bar, and ``args.set``'s own overrides."""
    windows = tokens // (args.epochs * args.context)
    return [f"data.root={root}", f"data.train_limit={windows}", f"train.epochs={args.epochs}",
            f"lm.context={args.context}", "train.progress=false", "out.tensorboard=false",
            f"train.threads={args.threads}", *args.set]


def setting(arm: str, keys: dict, lr: float) -> dict:
    return {"label": label(arm, lr), **keys, "train.lr": lr}


def label(arm: str, lr: float) -> str:
    return slug(f"{arm}, lr {lr:g}")


def pilot_scores(results: Path) -> dict[str, float]:
    """Label -> final validation bits per byte of every landed pilot run."""
    return landed_scores(results, "pilot", "val_bpb")


def lr_grid(arm: str, scores: dict[str, float]) -> tuple[list[float], float | None]:
    """The arm's lrs so far and its chosen lr (None until chosen): ``validation.ladder_grid`` on the base grid,
    lowest validation bits per byte at seed 0 winning (ties to the lower lr)."""
    return ladder_grid(lambda lr: scores.get(label(arm, lr)), BASE, LADDER, higher_is_better=False)


def seeds_needed(results: Path, lr: float) -> int:
    """n for the main stage: the smallest n >= 3 whose MDE (alpha 0.05, power 0.8) from the reference's seed sigma
    is <= ``MDE_TARGET``, at most ``MAX_SEEDS``."""
    values = [float(r["val_bpb"]) for r in landed_rows(results, "sigma")]
    pilot = pilot_scores(results).get(label(REFERENCE, lr))
    values += [pilot] if pilot is not None else []
    if len(values) < 1 + len(SIGMA_SEEDS):
        raise SystemExit("the sigma stage has not landed: run `lm_targets.py sigma` first")
    sigma = statistics.stdev(values)
    return next((n for n in range(3, MAX_SEEDS + 1) if mde(sigma, n) <= MDE_TARGET), MAX_SEEDS)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("stage", choices=("pilot", "sigma", "main"))
    parser.add_argument("--root", default="data/text/shakespeare")
    parser.add_argument("--runs", default="runs/lm_targets")
    parser.add_argument("--results", default="docs/results/lm_targets")
    parser.add_argument("--tokens", type=int, default=2_000_000, help="training tokens of every run")
    parser.add_argument("--epochs", type=int, default=4, help="the budget in this many epochs (validation after each)")
    parser.add_argument("--context", type=int, default=256)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--arms", nargs="+", help="only these arm labels")
    parser.add_argument("--limit-runs", type=int, default=None, help="stop after this many runs of the plan")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="more config overrides for every run (e.g. model.kwargs.width=96); named in the tables")
    args = parser.parse_args(argv)
    args.command = command_line("lm_targets", argv)
    args.model = load_config(RECIPE, schedule(args))["model"]["name"]
    if not Path(args.root).is_dir():
        raise SystemExit(f"no corpus at {args.root}: run `bash scripts/fetch_text.sh shakespeare` first")
    torch.set_num_threads(args.threads)
    every = {k: v for k, v in arms(schedule(args)).items() if not args.arms or k in args.arms}
    results = Path(args.results)
    stage = argparse.Namespace(**{**vars(args), "results": str(results / args.stage)})
    if args.stage == "pilot":  # planned again after each pass: a grid that widens gets its new rung
        run_while_grids_widen(
            lambda: [(setting(arm, keys, lr), 0) for arm, keys in every.items()
                     for lr in lr_grid(arm, pilot_scores(results))[0]],
            lambda plan: run_stage(args, stage, plan, None, "seed 0 of every arm at every lr of its grid"),
            limit_runs=args.limit_runs)
        return 0
    scores = pilot_scores(results)
    lrs = {arm: lr_grid(arm, scores)[1] for arm in every}
    missing = sorted(arm for arm, lr in lrs.items() if lr is None)
    if missing:
        raise SystemExit(f"the pilot has not chosen an lr for {missing} yet (its grid has not landed, or it "
                         "widened): run `lm_targets.py pilot` again")
    if args.stage == "sigma":
        plan = [(setting(REFERENCE, every[REFERENCE], lrs[REFERENCE]), seed) for seed in SIGMA_SEEDS]
        run_stage(args, stage, plan, None, f"the reference arm at its lr, seeds {list(SIGMA_SEEDS)} (the pilot is "
                                           "seed 0)")
        return 0
    n = seeds_needed(results, lrs[REFERENCE])
    plan = [(setting(arm, keys, lrs[arm]), seed) for seed in range(n) for arm, keys in every.items()]
    run_stage(args, stage, plan, label(REFERENCE, lrs[REFERENCE]),
              f"every arm at its lr, seeds 0-{n - 1} ({n} from the seed sigma: MDE <= {MDE_TARGET} bpb)")
    return 0


def run_stage(args, stage, plan: list[tuple[dict, int]], reference: str | None, what: str) -> None:
    windows = args.tokens // (args.epochs * args.context)
    run_plan(plan, stage, stem=args.stage, title=f"Language model targets and scales ({args.stage})",
             reference=reference, command=args.command, test=True, recipe=RECIPE,
             schedule=schedule(args),
             description=f"{what}; {args.model} on {args.root}, {windows * args.epochs * args.context:,} training "
                         "tokens in "
                         f"{args.epochs} epochs of {windows:,} windows of {args.context} bytes, AdamW, cosine; scored "
                         "on the validation block (final-epoch bits per byte, lower is better); each final model is "
                         "scored once on the test block (nothing is chosen on it)."
                         + (f" Overrides: {' '.join(args.set)}." if args.set else ""))


if __name__ == "__main__":
    sys.exit(main())
