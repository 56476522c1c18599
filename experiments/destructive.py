"""Issue 13, experiment 2: destructive weight sharing as in the paper (global 3% ring, Fashion-MNIST ResNet-20).

Arms: {element-wise (the paper's permutation, wiring v2), block 16 (v1 layout), no permutation} x {reflection on,
off}, and independent sampling; every arm with the same seeds and the lr the pilot chose on validation
(``--lr``, ``--seeds``). Scored on the 5,000-image validation split; compared with the element-wise + reflection
arm (the paper's setting). Resumable; tables rewritten after every run.

    python experiments/destructive.py --lr 0.1 --seeds 0 1 2 3
Writes docs/results/destructive/{README.md, destructive.csv, destructive.json, metrics/}.
"""
from __future__ import annotations

import sys

from validation import compare_arms


def arms() -> dict[str, dict]:
    out = {}
    for layout, keys in (("element-wise", {"ring.block": 1}), ("block 16", {"ring.block": 16}),
                         ("no permute", {"ring.permute": False})):
        for reflect in (True, False):
            out[f"{layout}, {'reflect' if reflect else 'no reflect'}"] = {**keys, "ring.reflect": reflect}
    out["independent sampling"] = {"ring.sampling": "independent"}
    return out


def main(argv=None) -> int:
    return compare_arms(argv, __doc__, stem="destructive", title="Destructive weight sharing (issue 13, experiment 2)",
                        arms=arms(), reference="element-wise, reflect", common={"ring.size": 0.03},
                        what="Global ring of 3% of ResNet-20's generated weights (stem and classifier free)")


if __name__ == "__main__":
    sys.exit(main())
