"""Accuracy against DoF at a real schedule (the paper's log-linear law; Fashion-MNIST ResNet-20).

Arms: one global ring of 0.3%, 1%, 3%, 10% and 30% of the generated weights (stem and classifier free), and the
dense model; every arm with the same seeds and the lr the pilot chose on validation (``--lr``, ``--seeds``).
Each final model is scored once on the full test set. The law is read from a least-squares line of test top-1
against log10(DoF) over every RPG run (slope per decade with its 95% interval, R², and the lack-of-fit F-test of
the per-size means against the line, the seeds giving the pure error); the plan fixing that reading is in
docs/results/analysis_plan.md. Each size is also compared with the dense model. Resumable.

    python experiments/dof_law.py --lr 0.2 --seeds 0 1 2
Writes docs/results/dof_law/{README.md, dof_law.csv, .json, metrics/, runs/}.
"""
from __future__ import annotations

import csv
import math
import statistics
import sys
from pathlib import Path

from claims import law_fit, law_table
from validation import compare_arms

SIZES = (0.003, 0.01, 0.03, 0.1, 0.3)
ARMS = {**{f"ring {size:g}": {"ring.size": size} for size in SIZES}, "dense": {"method": "dense"}}


def fit_lines(args):
    """The law's tables: the line over the RPG runs (test, then validation), each size's mean against the line,
    and the dense model against the line's value at its DoF."""
    def lines(_values):
        path = Path(args.results) / "dof_law.csv"
        rows = list(csv.DictReader(path.open())) if path.is_file() else []
        fits = {score: law_fit(rows, score) for score in ("test_top1", "val_top1")}
        if fits["test_top1"] is None:
            return []
        out = ["", "Log-linear law over the RPG runs: top-1 = slope · log10(DoF) + intercept (one point per run; the "
                   "lack-of-fit test compares each size's mean with the line, against the spread between seeds):", "",
               *law_table(fits, f_test=True)]
        fit = fits["test_top1"]
        out += ["", "Test top-1 by arm against the test line (mean over seeds; residual = mean - line):", "",
                "| setting | DoF | log10(DoF) | test top-1 (mean) | line | residual |", "|---|---|---|---|---|---|"]
        for label in dict.fromkeys(r["label"] for r in rows):
            members = [r for r in rows if r["label"] == label]
            dof = float(members[0]["dof"])
            mean = statistics.fmean(float(r["test_top1"]) for r in members)
            line = fit["slope"] * math.log10(dof) + fit["intercept"]
            note = " (not in the fit)" if label == "dense" else ""
            out.append(f"| {label}{note} | {int(dof):,} | {math.log10(dof):.2f} | {mean:.4f} | {line:.4f} | "
                       f"{mean - line:+.4f} |")
        return out
    return lines


def main(argv=None) -> int:
    return compare_arms(argv, __doc__, stem="dof_law", title="Accuracy against DoF (the log-linear law)", arms=ARMS,
                        reference="dense", extra=fit_lines,
                        what="One global ring per RPG arm (0.3%-30% of ResNet-20's generated weights; stem and "
                             "classifier free), and the dense model")


if __name__ == "__main__":
    sys.exit(main())
