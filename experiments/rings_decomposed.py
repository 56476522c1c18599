"""Issue 13, experiment 3: global vs local rings, decomposed (3% ring, Fashion-MNIST ResNet-20).

Arms: one global ring; one ring per stage; one per layer; one per layer with every ring started at the global
ring's initial std (``ring.init_std=global``: separates local sharing from each layer's own start); HashedNets
(``method=hashednets``: per-layer buckets, independent hashing). Every run logs each stage's share of the gradient
energy sent into the rings per epoch (``train.grad_energy``). Same seeds and lr for every arm (``--lr``,
``--seeds``, from the pilot), validation split, compared with the global ring. ``--per-layer-lr X`` adds the arm
"per layer, own lr" (per-layer rings at the lr the pilot chose for them, when it differs from the global ring's:
docs/results/analysis_plan.md). Resumable.

    python experiments/rings_decomposed.py --lr 0.1 --seeds 0 1 2 [--per-layer-lr 0.05]
Writes docs/results/rings_decomposed/{README.md, rings_decomposed.csv, .json, metrics/ (+ grad_energy.jsonl)}.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from validation import compare_arms, slug

ARMS = {"global": {}, "per stage": {"ring.rings": "per_stage"}, "per layer": {"ring.rings": "per_layer"},
        "per layer, global init std": {"ring.rings": "per_layer", "ring.init_std": "global"},
        "HashedNets": {"method": "hashednets"}}


def arms(args) -> dict[str, dict]:
    """The fixed arms, plus "per layer, own lr" with ``--per-layer-lr``."""
    if args.per_layer_lr is None:
        return ARMS
    return {**ARMS, "per layer, own lr": {"ring.rings": "per_layer", "train.lr": args.per_layer_lr}}


def options(parser) -> None:
    parser.add_argument("--per-layer-lr", type=float, default=None,
                        help="the lr the pilot chose for per-layer 3%% rings, when it differs from --lr")


def energy_lines(args):
    """The first and last epochs' stage shares of the ring-gradient energy, mean over seeds, per arm."""
    def lines(values):
        out = ["", "Share of the ring-gradient energy per stage (mean over seeds; first / last epoch):", "",
               "| setting | layer1 | layer2 | layer3 |", "|---|---|---|---|"]
        folder = Path(args.results) / "metrics"
        for label in arms(args):
            files = sorted(folder.glob(f"{slug(label)}_seed*.grad_energy.jsonl"))
            rows = [[json.loads(x) for x in f.read_text().splitlines()] for f in files]
            if not rows:
                continue
            cells = []
            for stage in ("layer1", "layer2", "layer3"):
                first = sum(r[0]["share"].get(stage, 0) for r in rows) / len(rows)
                last = sum(r[-1]["share"].get(stage, 0) for r in rows) / len(rows)
                cells.append(f"{first:.2f} / {last:.2f}")
            out.append(f"| {label} | " + " | ".join(cells) + " |")
        return out
    return lines


def main(argv=None) -> int:
    return compare_arms(argv, __doc__, stem="rings_decomposed",
                        title="Global vs local rings, decomposed (issue 13, experiment 3)", arms=arms,
                        reference="global", common={"ring.size": 0.03, "train.grad_energy": True},
                        what="Rings of 3% of ResNet-20's generated weights in all (stem and classifier free)",
                        extra=energy_lines, options=options)


if __name__ == "__main__":
    sys.exit(main())
