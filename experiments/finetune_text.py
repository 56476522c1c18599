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
- ``full`` (ceiling), ``bias`` and ``norms`` (floors): ``method: finetune`` on all, the biases, the LayerNorms;
- item 4's ablations of the ring adapter at 12,288 entries: ``no-signs``, ``mod-N`` (no permutation),
  ``independent`` sampling, ``per-layer`` rings, ``random-init`` and ``trainable-c`` (c_i trained, one per layer,
  taken out of the same budget).

Stages (``finetune.py``), each resumable (finished runs reused), run one after the other, in the venv that has peft
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
import sys
from pathlib import Path

import torch

import finetune
from lm_targets import lm_schedule as schedule
from results_table import command_line

import modelring as mr
from modelring.config import load_config

RECIPE = "configs/shakespeare_gpt_rpg.yaml"
LINEAR = ["blocks.*.attn.*.weight", "blocks.*.mlp.*.weight"]
BUDGETS = (1024, 4096, 12288, 49152, 196608)  # about 1k and 4k, then LoRA's own counts at ranks 1, 4, 16
LADDER = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1)
BASE_LRS = {"full": (1e-4, 3e-4, 1e-3), "bias": (1e-3, 3e-3, 1e-2), "norms": (1e-3, 3e-3, 1e-2)}
ADAPTER_LRS = (1e-3, 3e-3, 1e-2)  # ring, unilora, lora, vera, fourierft
SEEDS = (0, 1, 2)
ABLATIONS = {"no-signs": {"ring.reflect": False}, "mod-N": {"ring.permute": False},
             "independent": {"ring.sampling": "independent"}, "per-layer": {"ring.rings": "per_layer"},
             "random-init": {"adapter.init": "random"}}  # and trainable-c (one c_i per layer, out of the same budget)


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
    budget = BUDGETS[min(2, len(BUDGETS) - 1)]  # the ablations (item 4) at LoRA rank 1's count
    ring = out[f"ring {budget}"]
    out |= {f"ring {budget} {name}": {**ring, **change} for name, change in ABLATIONS.items()}
    out[f"ring {budget} trainable-c"] = {**ring, "ring.size": budget - len(layers), "adapter.trainable_scale": True}
    return out


def bed(args) -> finetune.Bed:
    return finetune.Bed(
        name="text", recipe=RECIPE, old=lambda a: schedule(a, a.old, a.pretrain_tokens),
        new=lambda a: schedule(a, a.new, a.tokens), arms=arms, base_lrs=lambda arm: BASE_LRS.get(arm, ADAPTER_LRS),
        pretrain={"method": "dense", "train.lr": args.pretrain_lr}, ladder=LADDER, seeds=SEEDS,
        describe=lambda a: (f"fine-tuning {a.new} from a base pretrained on {a.old} ({a.pretrain_tokens:,} tokens), "
                            f"{a.tokens:,} tokens in {a.epochs} epochs, AdamW, cosine; score: validation bits per byte "
                            "on the new corpus (final epoch, lower is better)"))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    finetune.add_arguments(parser, "finetune_text")
    parser.add_argument("--old", default="data/text/shakespeare", help="the pretraining corpus")
    parser.add_argument("--new", default="data/text/bible", help="the fine-tuning corpus")
    parser.add_argument("--pretrain-tokens", type=int, default=8_000_000)
    parser.add_argument("--pretrain-lr", type=float, default=1e-3)
    parser.add_argument("--tokens", type=int, default=1_000_000, help="fine-tuning tokens of every run")
    parser.add_argument("--epochs", type=int, default=4, help="each budget in this many epochs (validation after each)")
    parser.add_argument("--context", type=int, default=256)
    args = parser.parse_args(argv)
    for corpus in (args.old, args.new):
        if not Path(corpus).is_dir():
            raise SystemExit(f"no corpus at {corpus}: run `bash scripts/fetch_text.sh shakespeare bible` first")
    return finetune.run_stage(bed(args), args, command_line("finetune_text", argv))


if __name__ == "__main__":
    sys.exit(main())
