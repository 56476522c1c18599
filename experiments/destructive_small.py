"""Issue 22's optional extra: destructive weight sharing again at a 0.3% ring, where the headroom to dense is 0.051
test top-1 instead of 0.014 at 3% (Fashion-MNIST ResNet-20, issue 13's 10-epoch schedule and fp32, so its numbers sit
beside ``destructive/``'s). Arms: {element-wise permutation, no permutation} x {reflection on, off}, the same seeds
and the lr the pilot chose for the global 0.3% ring on validation (0.2). Plan: docs/results/destructive_small/plan.md.

    python experiments/destructive_small.py --lr 0.2 --seeds 0 1 2 3 4
Writes docs/results/destructive_small/{README.md, destructive_small.csv, destructive_small.json, metrics/}.
"""
from __future__ import annotations

import sys

from destructive import arms as all_arms
from validation import compare_arms

ARMS = ("element-wise, reflect", "element-wise, no reflect", "no permute, reflect", "no permute, no reflect")


def arms() -> dict[str, dict]:
    return {label: keys for label, keys in all_arms().items() if label in ARMS}


def main(argv=None) -> int:
    return compare_arms(argv, __doc__, stem="destructive_small",
                        title="Destructive weight sharing at a 0.3% ring (issue 22, optional extra)", arms=arms(),
                        reference="element-wise, reflect", common={"ring.size": 0.003},
                        what="Global ring of 0.3% of ResNet-20's generated weights (stem and classifier free)")


if __name__ == "__main__":
    sys.exit(main())
