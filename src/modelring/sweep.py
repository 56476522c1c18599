"""Sweeps: one recipe trained over a grid of overrides and several seeds, collected into one table.

``modelring sweep CONFIG --grid ring.size=0.01,0.03,0.1 --seeds 0 1 --dense`` trains every combination
(each in its own run folder, skipped when its ``report.json`` already exists, so a killed sweep resumes),
writes ``sweep.csv`` / ``sweep.json`` with one row per run, a ``summary.md`` table of mean ± std per setting,
and the log-linear fit of test accuracy against log10(DoF) that the paper reports (slope, intercept, R²).
"""
from __future__ import annotations

import csv
import itertools
import json
import math
import statistics
import time
from pathlib import Path

from .config import load_config, parse_value
from .io import write_atomic
from .runfiles import config_differences
from .loop import fit


def parse_grid(items: list[str]) -> dict[str, list]:
    """``["ring.size=0.01,0.1", "ring.block=1,16"]`` -> {"ring.size": [0.01, 0.1], "ring.block": [1, 16]}."""
    grid = {}
    for item in items:
        key, sep, values = item.partition("=")
        if not sep or not values:
            raise ValueError(f"grid entry {item!r} must look like section.key=v1,v2,..., e.g. ring.size=0.01,0.1")
        grid[key.strip()] = [parse_value(v) for v in values.split(",")]
    return grid


def combinations(grid: dict[str, list], dense: bool) -> list[dict]:
    """Every combination of the grid's values, plus a dense run (method=dense) when asked."""
    keys = list(grid)
    combos = [dict(zip(keys, values)) for values in itertools.product(*(grid[k] for k in keys))]
    return combos + ([{"method": "dense"}] if dense else [])


def run_name(combo: dict, seed: int) -> str:
    """Folder name of one run: the combo's ``label`` when it has one, else its settings."""
    if "label" in combo:
        return f"{combo['label']}_seed{seed}"
    parts = [combo["method"] if "method" in combo else ""]
    parts += [f"{k.split('.')[-1]}={v}" for k, v in combo.items() if k != "method"]
    return "_".join(p for p in parts if p) + f"_seed{seed}"


def run_sweep(config: str | Path, grid: dict[str, list], *, seeds: list[int], overrides: list[str] = (),
              out: str | Path, dense: bool = False, log=print) -> list[dict]:
    """Train every (combination, seed); returns one row per run (settings + report) and writes the tables."""
    rows = run_settings(config, combinations(grid, dense), seeds=seeds, overrides=overrides, out=out, log=log)
    write_tables(rows, Path(out))
    return rows


def run_settings(config: str | Path, settings: list[dict], *, seeds: list[int], overrides: list[str] = (),
                 out: str | Path, log=print) -> list[dict]:
    """Train every (setting, seed) in its own folder under ``out`` (reusing finished runs).

    Each setting maps dotted config keys to values, plus an optional ``label`` naming its runs (settings
    that are not a grid product, e.g. the equal-DoF baselines). ``train.seed`` and ``ring.seed`` follow the
    seed. Returns one row per run: run name, seed, the settings and the run's report.
    """
    out = Path(out)
    rows = []
    for combo in settings:
        for seed in seeds:
            name = run_name(combo, seed)
            folder = out / name
            items = [f"{k}={json.dumps(v)}" for k, v in combo.items() if k != "label"]
            cfg = load_config(config, [*overrides, *items, f"train.seed={seed}", f"ring.seed={seed}",
                                       f"out.dir={folder}"])
            if (folder / "report.json").exists():
                _check_same_config(folder, cfg)
                report = json.loads((folder / "report.json").read_text())
                log(f"{name}: done before, reusing its report")
            else:
                log(f"{name}: training")
                started = time.perf_counter()
                report = fit(cfg, resume=True, log=lambda *a: None)  # a killed run continues from its last.pt
                report["wall_s"] = round(time.perf_counter() - started, 1)  # kept so resumed sweeps can sum it
                write_atomic(folder / "report.json", lambda t: Path(t).write_text(json.dumps(report, indent=1)))
            rows.append({"run": name, "seed": seed, **{k: str(v) for k, v in combo.items()}, **report})
            split = split_of([report])
            log(f"{name}: {split} top-1 {report[f'{split}_top1']:.4f}, DoF {report['dof']:,}")
    return rows


def _check_same_config(folder: Path, cfg: dict) -> None:
    """A finished run is reused only if it was trained with the config planned now: a changed default (e.g. the
    wiring's ``ring.block``) must not mix old and new runs in one table."""
    stored = folder / "config.yaml"
    diffs = config_differences(load_config(stored, []), cfg) if stored.is_file() else []
    if diffs:
        keys = ", ".join(d.split(":")[0] for d in diffs[:5])
        raise ValueError(f"{folder} was trained with a different config ({keys} differ); it cannot be reused in "
                         "this sweep: pass a new --out folder, or delete the run to retrain it")


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


def group_by_setting(rows: list[dict]) -> dict[str, list[dict]]:
    """Runs grouped by setting (the run name without ``_seed<k>``), in first-seen order."""
    groups: dict[str, list[dict]] = {}
    for row in rows:
        groups.setdefault(row["run"].rsplit("_seed", 1)[0], []).append(row)
    return groups


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    return statistics.mean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def split_of(rows: list[dict]) -> str:
    """``val`` when the runs evaluated on a validation split held out of the training data, else ``test``."""
    return "val" if rows and "val_top1" in rows[0] else "test"


def summarize(rows: list[dict]) -> list[dict]:
    """Mean ± std of top-1 (on the runs' evaluation split) per setting (runs that differ only by seed)."""
    out, key = [], f"{split_of(rows)}_top1"
    for setting, members in group_by_setting(rows).items():
        mean, std = mean_std([m[key] for m in members])
        out.append({"setting": setting, "dof": members[0]["dof"], "dof_fraction": members[0]["dof_fraction"],
                    "mean": mean, "std": std, "seeds": len(members)})
    return sorted(out, key=lambda r: r["dof"])


def write_csv(rows: list[dict], path: Path) -> None:
    """One CSV row per dict (the union of their keys as columns), written atomically."""
    fields = list(dict.fromkeys(k for row in rows for k in row))

    def write(tmp):
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=fields)
            writer.writeheader()
            writer.writerows(rows)
    write_atomic(path, write)


def write_tables(rows: list[dict], out: Path) -> None:
    """sweep.csv, sweep.json, summary.md (with the log-linear fit over the RPG runs)."""
    out.mkdir(parents=True, exist_ok=True)
    write_csv(rows, out / "sweep.csv")
    summary = summarize(rows)
    rpg = [r for r in rows if not r["run"].startswith("dense")]
    split = split_of(rows)
    fit = fit_loglinear([r["dof"] for r in rpg], [r[f"{split}_top1"] for r in rpg]) \
        if len({r["dof"] for r in rpg}) > 1 else None
    write_atomic(out / "sweep.json", lambda t: Path(t).write_text(json.dumps({"rows": rows, "summary": summary,
                                                                               "fit": fit}, indent=1)))
    lines = [f"| setting | DoF | DoF % | {split} top-1 (mean ± std) | seeds |", "|---|---|---|---|---|"]
    lines += [f"| {r['setting']} | {r['dof']:,} | {100 * r['dof_fraction']:.2f} | {r['mean']:.4f} ± {r['std']:.4f} "
              f"| {r['seeds']} |" for r in summary]
    if fit:
        lines += ["", f"Log-linear fit over the RPG runs: top-1 = {fit['slope_per_decade']:.4f} · log10(DoF) "
                      f"{fit['intercept']:+.4f}, R² = {fit['r2']:.3f} ({fit['points']} runs)"]
    write_atomic(out / "summary.md", lambda t: Path(t).write_text("\n".join(lines) + "\n"))
    plot(summary, fit, out / "sweep.png")


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
