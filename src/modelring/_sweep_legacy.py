"""The classification-only reporting ``modelring.sweep`` carried before it became task-agnostic, kept importable
(with a ``DeprecationWarning``, through ``modelring.sweep.__getattr__``) for one release; then this file goes.

Its replacements: ``experiments/stats.py`` ``line_fit`` (the one line fit) and ``experiments/sweep_fit.py`` (fit and
plot of a sweep folder); ``modelring.sweep.selection_score`` names a run's score for every task.
"""
from __future__ import annotations

import math
import statistics
from pathlib import Path

from .io import write_atomic


def fit_loglinear(dofs: list[float], accs: list[float]) -> dict:
    """Least-squares fit acc = slope * log10(dof) + intercept, with R²."""
    xs = [math.log10(d) for d in dofs]
    mx, my = statistics.mean(xs), statistics.mean(accs)
    sxx = sum((x - mx) ** 2 for x in xs)
    if len(xs) < 2 or sxx == 0:
        raise ValueError("a log-linear fit needs at least two different DoF values")
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, accs)) / sxx
    intercept = my - slope * mx
    ss_res = sum((y - (slope * x + intercept)) ** 2 for x, y in zip(xs, accs))
    ss_tot = sum((y - my) ** 2 for y in accs)
    return {"slope_per_decade": slope, "intercept": intercept, "r2": 1 - ss_res / ss_tot if ss_tot else 1.0,
            "points": len(xs)}


def split_of(rows: list[dict]) -> str:
    """``val`` when the runs evaluated on a validation split held out of the training data, else ``test``."""
    return "val" if rows and "val_top1" in rows[0] else "test"


def plot(summary: list[dict], fit: dict | None, path: Path) -> bool:
    """Test top-1 against DoF (log axis) with seed std, the fit line and the dense run; needs matplotlib."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # the plot is optional: pip install matplotlib
        return False
    fig, ax = plt.subplots(figsize=(6, 4))
    rpg = [r for r in summary if not r["setting"].startswith("dense")]
    ax.errorbar([r["dof"] for r in rpg], [r["mean"] for r in rpg], yerr=[r["std"] for r in rpg], fmt="o",
                capsize=3, label="RPG")
    for r in summary:
        if r["setting"].startswith("dense"):
            ax.errorbar([r["dof"]], [r["mean"]], yerr=[r["std"]], fmt="s", color="k", capsize=3, label="dense")
    if fit:
        xs = [min(r["dof"] for r in rpg), max(r["dof"] for r in rpg)]
        ax.plot(xs, [fit["slope_per_decade"] * math.log10(x) + fit["intercept"] for x in xs], "--",
                label=f"fit, R² = {fit['r2']:.3f}")
    ax.set_xscale("log")
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())  # minor labels overlap on short ranges
    ax.set_xlabel("trainable parameters (DoF)")
    ax.set_ylabel("test top-1")
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    write_atomic(path, lambda tmp: fig.savefig(tmp, format="png", dpi=120))
    plt.close(fig)
    return True
