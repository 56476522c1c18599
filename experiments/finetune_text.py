"""Issue 25, item 2: fine-tuning a pretrained language model through a ring adapter against the peft baselines at
equal trainable parameters. The plan, fixed before the first run: docs/results/finetune_text/plan.md.

A char-level ``gpt_tiny`` is pretrained densely on Shakespeare (``stage pretrain``, one run), then fine-tuned on the
King James Bible (a style shift; ``bash scripts/fetch_text.sh shakespeare bible``) by every method at every budget
of trainable parameters it can meet exactly (or, for LoRA, the budgets are its own counts):

- ``ring``: the ring adapter (``method: adapter``), ring entries = the budget, every block Linear weight adapted;
- ``unilora``: peft's Uni-LoRA, ``theta_d_length`` = the budget (rank 4);
- ``lora``: peft's LoRA on every block Linear, rank 1 / 4 / 16 (12,288 / 49,152 / 196,608 trainable);
- ``vera``: peft's VeRA, rank (budget - sum of output widths) / layers (from 12,288 up);
- ``fourierft``: peft's FourierFT, ``n_frequency`` = budget / layers;
- ``full`` (ceiling), ``bias`` and ``norms`` (floors): ``method: finetune`` on all, the biases, the LayerNorms.

Stages, each resumable (finished runs reused), run one after the other, in the venv that has peft
(``bash scripts/test_hf.sh`` builds ``.venv-hf``; run with ``.venv-hf/bin/python``):

    python experiments/finetune_text.py pretrain   # the base (dense gpt_tiny on Shakespeare)
    python experiments/finetune_text.py lr         # seed 0 of every (method, budget) on an lr ladder; again while
                                                   # a grid widens past a winning edge
    python experiments/finetune_text.py seeds      # every (method, budget) at its lr, seeds 0-2

Scores: validation bits per byte on the new corpus (final epoch; every choice), test bits per byte on it (each
final model once), and forgetting: the final model's bits per byte on the old corpus's validation block (from
the base's). Trainable parameters, adapter bytes and s/step come from each run's report. Writes
docs/results/finetune_text/<stage>/ (tables, per-epoch metrics, forgetting.csv).
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import torch

from results_table import command_line
from validation import final_model, ladder_grid, run_plan, slug

import modelring as mr
from modelring.atomic import write_atomic
from modelring.config import load_config

RECIPE = "configs/shakespeare_gpt_rpg.yaml"
LINEAR = ["blocks.*.attn.*.weight", "blocks.*.mlp.*.weight"]
BUDGETS = (1024, 4096, 12288, 49152, 196608)  # about 1k and 4k, then LoRA's own counts at ranks 1, 4, 16
LADDER = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1)
BASE_LRS = {"full": (1e-4, 3e-4, 1e-3), "bias": (1e-3, 3e-3, 1e-2), "norms": (1e-3, 3e-3, 1e-2)}
ADAPTER_LRS = (1e-3, 3e-3, 1e-2)  # ring, unilora, lora, vera, fourierft
SEEDS = (0, 1, 2)


def linear_layers(schedule: list[str]) -> list[tuple[str, int, int]]:
    """(module name, in, out) of every block Linear of the recipe's model under ``schedule``."""
    model = load_config(RECIPE, schedule)["model"]
    built = mr.create_model(model["name"], **(model.get("kwargs") or {}))
    return [(name, m.in_features, m.out_features) for name, m in built.named_modules()
            if isinstance(m, torch.nn.Linear) and name.startswith("blocks.")]


def arms(schedule: list[str], base: str) -> dict[str, dict]:
    """Label -> settings (without lr and seed) of every (method, budget) the methods meet exactly."""
    layers = linear_layers(schedule)
    targets = [name for name, _, _ in layers]
    lora_unit, outs = sum(i + o for _, i, o in layers), sum(o for _, _, o in layers)
    tune = {"adapter.base": base}
    peft = {**tune, "method": "peft", "peft.targets": targets}
    out = {"full": {**tune, "method": "finetune"},
           "bias": {**tune, "method": "finetune", "adapter.train": ["*.bias"]},
           "norms": {**tune, "method": "finetune", "adapter.train": ["*ln*"]}}
    for budget in BUDGETS:
        out[f"ring {budget}"] = {**tune, "method": "adapter", "ring.size": budget, "ring.exclude": None,
                                 "ring.include": LINEAR}
        out[f"unilora {budget}"] = {**peft, "peft.type": "unilora", "peft.options": {"r": 4, "theta_d_length": budget}}
        if budget % len(layers) == 0:
            out[f"fourierft {budget}"] = {**peft, "peft.type": "fourierft",
                                          "peft.options": {"n_frequency": budget // len(layers)}}
        if budget % lora_unit == 0:
            out[f"lora {budget}"] = {**peft, "peft.type": "lora",
                                     "peft.options": {"r": budget // lora_unit, "lora_alpha": budget // lora_unit}}
        if budget > outs and (budget - outs) % len(layers) == 0:
            out[f"vera {budget}"] = {**peft, "peft.type": "vera", "peft.options": {"r": (budget - outs) // len(layers)}}
    return out


def base_lrs(arm: str) -> tuple[float, ...]:
    return BASE_LRS.get(arm, ADAPTER_LRS)


def label(arm: str, lr: float) -> str:
    return slug(f"{arm}, lr {lr:g}")


def schedule(args, corpus: str) -> list[str]:
    windows = args.tokens // (args.epochs * args.context)
    return [f"data.root={corpus}", f"data.train_limit={windows}", f"train.epochs={args.epochs}",
            f"lm.context={args.context}", "train.progress=false", "out.tensorboard=false",
            f"train.threads={args.threads}", *args.set]


def scores(results: Path) -> dict[str, float]:
    path = results / "lr" / "lr.csv"
    return {r["label"]: float(r["val_bpb"]) for r in csv.DictReader(path.open())} if path.is_file() else {}


def lr_grid(arm: str, landed: dict[str, float]) -> tuple[list[float], float | None]:
    return ladder_grid(lambda lr: landed.get(label(arm, lr)), base_lrs(arm), LADDER, higher_is_better=False)


def forgetting(run: Path, old_corpus: str, args) -> dict:
    """The final model's bits per byte on the old corpus's validation block, kept in the run's forgetting.json."""
    path = run / "forgetting.json"
    if not path.is_file():
        from modelring.loop import evaluate_on_split

        cfg = load_config(RECIPE, schedule(args, old_corpus))
        numbers = {"old_val_bpb": evaluate_on_split(cfg, final_model(run).eval())["bpb"]}
        write_atomic(path, lambda tmp: Path(tmp).write_text(json.dumps(numbers)))
    return json.loads(path.read_text())


def write_forgetting(rows: list[dict], base_bpb: float, out: Path) -> None:
    lines = ["label,seed,dof,val_bpb,old_val_bpb,forgetting_bpb"]
    lines += [f"{r['label']},{r['seed']},{r['dof']},{r['val_bpb']:.6f},{r['old_val_bpb']:.6f},"
              f"{r['old_val_bpb'] - base_bpb:.6f}" for r in rows]
    out.mkdir(parents=True, exist_ok=True)
    write_atomic(out / "forgetting.csv", lambda tmp: Path(tmp).write_text("\n".join(lines) + "\n"))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("stage", choices=("pretrain", "lr", "seeds"))
    parser.add_argument("--old", default="data/text/shakespeare", help="the pretraining corpus")
    parser.add_argument("--new", default="data/text/bible", help="the fine-tuning corpus")
    parser.add_argument("--runs", default="runs/finetune_text")
    parser.add_argument("--results", default="docs/results/finetune_text")
    parser.add_argument("--pretrain-tokens", type=int, default=8_000_000)
    parser.add_argument("--pretrain-lr", type=float, default=1e-3)
    parser.add_argument("--tokens", type=int, default=1_000_000, help="fine-tuning tokens of every run")
    parser.add_argument("--epochs", type=int, default=4, help="the budget in this many epochs (validation after each)")
    parser.add_argument("--context", type=int, default=256)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--arms", nargs="+", help="only these arm labels (e.g. 'ring 12288' 'lora 12288' full)")
    parser.add_argument("--limit-runs", type=int, default=None, help="stop after this many runs of the plan")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="more config overrides for every run (pretraining too), named in the tables")
    args = parser.parse_args(argv)
    for corpus in (args.old, args.new):
        if not Path(corpus).is_dir():
            raise SystemExit(f"no corpus at {corpus}: run `bash scripts/fetch_text.sh shakespeare bible` first")
    torch.set_num_threads(args.threads)
    results, runs = Path(args.results), Path(args.runs)
    command = command_line("finetune_text", argv)
    if args.stage == "pretrain":
        pre = argparse.Namespace(**{**vars(args), "tokens": args.pretrain_tokens})
        stage = argparse.Namespace(**{**vars(args), "results": str(results / "pretrain")})
        run_plan([({"label": "pretrain", "method": "dense", "train.lr": args.pretrain_lr}, 0)], stage,
                 stem="pretrain", title="Fine-tuning: the pretrained base", reference=None, command=command,
                 recipe=RECIPE, schedule=schedule(pre, args.old),
                 description=f"dense pretraining on {args.old}, {args.pretrain_tokens:,} tokens, lr "
                             f"{args.pretrain_lr:g}; scored on its validation block")
        return 0
    base = runs / "pretrain_seed0" / "model.safetensors"
    if not base.is_file():
        raise SystemExit("the base is not trained yet: run `finetune_text.py pretrain` first")
    pre_report = json.loads((runs / "pretrain_seed0" / "report.json").read_text())
    new = schedule(args, args.new)
    every = {k: v for k, v in arms(new, str(base)).items() if not args.arms or k in args.arms}
    stage = argparse.Namespace(**{**vars(args), "results": str(results / args.stage)})
    describe = (f"fine-tuning {args.new} from the base ({args.old}, validation {pre_report['val_bpb']:.4f} bits per "
                f"byte), {args.tokens:,} tokens in {args.epochs} epochs, AdamW, cosine; score: validation bits per "
                "byte on the new corpus (final epoch, lower is better); each final model once on its test block")

    def run(plan: list[tuple[dict, int]], reference: str | None) -> list[dict]:
        rows = run_plan(plan, stage, stem=args.stage, title=f"Fine-tuning at equal trainable parameters "
                        f"({args.stage})", reference=reference, command=command, test=True, recipe=RECIPE,
                        schedule=new, description=describe)
        rows = [{**r, **forgetting(runs / r["run"], args.old, args)} for r in rows]
        write_forgetting(rows, pre_report["val_bpb"], results / args.stage)
        return rows

    if args.stage == "lr":
        done: list = []
        while True:
            landed = scores(results)
            plan = [({"label": label(arm, lr), **keys, "train.lr": lr}, 0) for arm, keys in every.items()
                    for lr in lr_grid(arm, landed)[0]]
            if plan == done or (args.limit_runs is not None and done):
                return 0
            run(plan, None)
            done = plan
    landed = scores(results)
    chosen = {arm: lr_grid(arm, landed)[1] for arm in every}
    missing = sorted(arm for arm, lr in chosen.items() if lr is None)
    if missing:
        raise SystemExit(f"the lr stage has not chosen an lr for {missing} yet: run `finetune_text.py lr` again")
    run([({"label": label(arm, chosen[arm]), **keys, "train.lr": chosen[arm]}, seed) for seed in SEEDS
         for arm, keys in every.items()], None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
