"""The log-linear law of a ``modelring sweep`` folder: its score against log10(DoF), fitted over the ring runs
(``stats.line_fit``: one point per run, the dense runs left out), and the figure of the score against DoF.

Reads FOLDER/sweep.csv (and FOLDER/sweep.json's ``score`` when present; ``--score`` to choose another column);
writes FOLDER/fit.md and FOLDER/sweep.png (the figure needs matplotlib).

Usage: python experiments/sweep_fit.py runs/sweep_dof [--score test_top1]
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from pathlib import Path

from results_table import group_by_setting, mean_std, pyplot, write_markdown
from stats import line_fit

from modelring.io import write_atomic


def read_sweep(folder: Path, score: str | None = None) -> tuple[list[dict], str]:
    """(rows of ``sweep.csv`` with ``dof`` and the score as numbers, the score's column): the one given, else
    ``sweep.json``'s, else ``val_top1`` when the runs have it, else ``test_top1``."""
    with open(folder / "sweep.csv") as f:
        rows = list(csv.DictReader(f))
    if score is None and (folder / "sweep.json").is_file():
        score = json.loads((folder / "sweep.json").read_text()).get("score")
    score = score or ("val_top1" if rows and rows[0].get("val_top1") else "test_top1")
    return [{**r, "dof": int(r["dof"]), score: float(r[score])} for r in rows], score


def is_ring_run(row: dict) -> bool:
    return not row["run"].startswith("dense")


def loglinear_fit(rows: list[dict], score: str) -> dict | None:
    """``line_fit`` of ``score`` against log10(DoF) over the ring runs; None without three runs at two DoF."""
    ring = [r for r in rows if is_ring_run(r)]
    if len(ring) < 3 or len({r["dof"] for r in ring}) < 2:
        return None
    return line_fit([math.log10(r["dof"]) for r in ring], [r[score] for r in ring])


def fit_line(fit: dict, score: str) -> str:
    return (f"Log-linear fit over the RPG runs: {score} = {fit['slope']:.4f} · log10(DoF) {fit['intercept']:+.4f}, "
            f"R² = {fit['r2']:.3f} ({fit['points']} runs); slope 95% CI ± {fit['slope_ci']:.4f}")


def plot(rows: list[dict], score: str, fit: dict | None, path: Path) -> bool:
    """The score against DoF (log axis), mean ± std over seeds per setting, the fit line and the dense runs."""
    plt = pyplot()
    if plt is None:
        return False
    import matplotlib

    fig, ax = plt.subplots(figsize=(6, 4))
    for label, dense, style in (("RPG", False, dict(fmt="o")), ("dense", True, dict(fmt="s", color="k"))):
        groups = [g for g in group_by_setting(rows).values() if is_ring_run(g[0]) != dense]
        stats = [mean_std([r[score] for r in g]) for g in groups]
        if groups:
            ax.errorbar([g[0]["dof"] for g in groups], [m for m, _ in stats], yerr=[s for _, s in stats], capsize=3,
                        label=label, **style)
    if fit:
        dofs = [r["dof"] for r in rows if is_ring_run(r)]
        xs = [min(dofs), max(dofs)]
        ax.plot(xs, [fit["slope"] * math.log10(x) + fit["intercept"] for x in xs], "--",
                label=f"fit, R² = {fit['r2']:.3f}")
    ax.set_xscale("log")
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())  # minor labels overlap on short ranges
    ax.set_xlabel("trainable parameters (DoF)")
    ax.set_ylabel(score)
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    write_atomic(path, lambda tmp: fig.savefig(tmp, format="png", dpi=120))
    plt.close(fig)
    return True


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path, help="a sweep's --out folder (holding sweep.csv)")
    parser.add_argument("--score", help="the column to fit (default: the sweep's score)")
    args = parser.parse_args(argv)
    rows, score = read_sweep(args.folder, args.score)
    fit = loglinear_fit(rows, score)
    text = fit_line(fit, score) if fit else "No fit: it needs three ring runs at two or more DoF values."
    write_markdown(args.folder / "fit.md", [text])
    plot(rows, score, fit, args.folder / "sweep.png")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
