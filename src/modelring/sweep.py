"""Sweeps: one recipe trained over a plan of settings and seeds, for any task, collected into one table.

``modelring sweep CONFIG --grid ring.size=0.01,0.03,0.1 --seeds 0 1 --dense`` trains every combination, each in
its own run folder: a finished run (its ``report.json``) is reused once its stored config is checked to match the
one planned now, and a killed run resumes from its ``last.pt``, so a killed sweep resumes. It then writes
``sweep.csv`` (one row per run), ``sweep.json`` (the rows and, per setting, mean, std and seeds of the score) and a
plain ``summary.md`` table.

The score is the one the task picks its best model on (``Task.selection``) on the split it evaluates
(``Task.eval_split``): ``test_top1`` or ``val_top1`` for classification, ``test_pckh`` for pose,
``test_<multitask.select>`` for multi-task (lower is better for its errors). Fits and figures are research
reporting and live with the experiments (``experiments/sweep_fit.py`` fits and plots a sweep folder).
"""
from __future__ import annotations

import csv
import itertools
import json
import statistics
import time
import warnings
from pathlib import Path
from typing import NamedTuple

from .config import load_config, parse_value
from .io import write_atomic
from .runfiles import config_differences
from .loop import fit
from .tasks import get_task


class PlannedRun(NamedTuple):
    """One (setting, seed) of a plan: its name, seed, setting, folder and the full config it trains with."""
    name: str
    seed: int
    setting: dict
    folder: Path
    cfg: dict


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


def selection_score(cfg: dict) -> tuple[str, bool]:
    """The report key a run of ``cfg`` is scored by, and whether higher is better.

    Args:
        cfg: a full config (``load_config``).

    Returns:
        (``<eval split>_<selection metric>``, e.g. ``("val_top1", True)`` or ``("test_depth_rmse", False)``;
        higher is better), both as the config's task declares them.
    """
    task = get_task(cfg["task"]["name"])
    metric, higher = task.selection(cfg)
    return f"{task.eval_split(cfg)}_{metric}", higher


def plan_runs(config: str | Path, settings: list[dict], *, seeds: list[int], overrides: list[str] = (),
              out: str | Path) -> list[PlannedRun]:
    """Every (setting, seed) with its folder under ``out`` and its config, setting-major; nothing is trained.

    Args:
        config: the YAML recipe every run starts from.
        settings: dotted config keys to values, plus an optional ``label`` naming the setting's runs.
        seeds: each setting runs once per seed; ``train.seed`` and ``ring.seed`` follow it.
        overrides: dotted ``key=value`` overrides applied to every run (before the setting's own keys).
        out: the folder holding one run folder per run.

    Returns:
        One ``PlannedRun`` per run, in the order they train.
    """
    runs = []
    for setting in settings:
        for seed in seeds:
            name = run_name(setting, seed)
            folder = Path(out) / name
            # the setting's values reach load_config as YAML text, the same way command-line overrides do
            items = [f"{k}={json.dumps(v)}" for k, v in setting.items() if k != "label"]
            cfg = load_config(config, [*overrides, *items, f"train.seed={seed}", f"ring.seed={seed}",
                                       f"out.dir={folder}"])
            runs.append(PlannedRun(name, seed, setting, folder, cfg))
    return runs


def train_or_reuse(run: PlannedRun, log=print) -> dict:
    """The run's report: read back when it finished before (with the same config), else trained (resuming a killed
    run from its ``last.pt``) and written to ``report.json`` with its wall time."""
    if (run.folder / "report.json").exists():
        _check_same_config(run.folder, run.cfg)
        log(f"{run.name}: done before, reusing its report")
        return json.loads((run.folder / "report.json").read_text())
    log(f"{run.name}: training")
    started = time.perf_counter()
    report = fit(run.cfg, resume=True, log=lambda *a: None)
    report["wall_s"] = round(time.perf_counter() - started, 1)  # kept so resumed sweeps can sum it
    write_atomic(run.folder / "report.json", lambda t: Path(t).write_text(json.dumps(report, indent=1)))
    return report


def run_plan(runs: list[PlannedRun], log=print) -> list[dict]:
    """Train (or reuse) every planned run in order; one row per run: run name, seed, the setting's values as text
    and the run's report."""
    rows = []
    for run in runs:
        report = train_or_reuse(run, log)
        rows.append({"run": run.name, "seed": run.seed, **{k: str(v) for k, v in run.setting.items()}, **report})
        score, _ = selection_score(run.cfg)
        log(f"{run.name}: {score} {report[score]:.4f}, DoF {report['dof']:,}")
    return rows


def run_settings(config: str | Path, settings: list[dict], *, seeds: list[int], overrides: list[str] = (),
                 out: str | Path, log=print) -> list[dict]:
    """Train every (setting, seed) in its own folder under ``out`` (reusing finished runs).

    Each setting maps dotted config keys to values, plus an optional ``label`` naming its runs (settings
    that are not a grid product, e.g. the equal-DoF baselines). ``train.seed`` and ``ring.seed`` follow the
    seed. Returns one row per run: run name, seed, the settings and the run's report.
    """
    return run_plan(plan_runs(config, settings, seeds=seeds, overrides=overrides, out=out), log)


def run_sweep(config: str | Path, grid: dict[str, list], *, seeds: list[int], overrides: list[str] = (),
              out: str | Path, dense: bool = False, log=print) -> list[dict]:
    """Train every (combination, seed) and write the tables (``write_tables``).

    Args:
        config: the YAML recipe, of any task.
        grid: dotted key -> values; their product is swept (``parse_grid``).
        seeds: the seeds of every combination.
        overrides: dotted ``key=value`` overrides applied to every run.
        out: folder of the run folders and the tables.
        dense: also train the dense model (``method=dense``).
        log: where progress lines go.

    Returns:
        One row per run (settings + report).
    """
    runs = plan_runs(config, combinations(grid, dense), seeds=seeds, overrides=overrides, out=out)
    scores = {selection_score(run.cfg) for run in runs}
    if len(scores) > 1:  # checked before training: one table cannot mix scores
        raise ValueError(f"the runs of this sweep are scored differently ({sorted(scores)}): sweep keys that change "
                         "the task, its evaluation split or its selection metric in separate sweeps")
    rows = run_plan(runs, log)
    if rows:
        score, higher = scores.pop()
        write_tables(rows, Path(out), score=score, higher_is_better=higher)
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


def group_by_setting(rows: list[dict]) -> dict[str, list[dict]]:
    """Runs grouped by setting (the run name without ``_seed<k>``), in first-seen order."""
    groups: dict[str, list[dict]] = {}
    for row in rows:
        groups.setdefault(row["run"].rsplit("_seed", 1)[0], []).append(row)
    return groups


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    return statistics.mean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def summarize(rows: list[dict], score: str) -> list[dict]:
    """Per setting (runs that differ only by seed): DoF, DoF fraction, mean ± std of ``score`` and the number of
    seeds, sorted by DoF.

    Args:
        rows: the sweep's rows (``run_settings``).
        score: the report key to summarise, e.g. ``selection_score(cfg)[0]``.

    Returns:
        One dict per setting: ``setting``, ``dof``, ``dof_fraction``, ``mean``, ``std``, ``seeds``.
    """
    out = []
    for setting, members in group_by_setting(rows).items():
        mean, std = mean_std([m[score] for m in members])
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


def write_tables(rows: list[dict], out: Path, *, score: str, higher_is_better: bool) -> None:
    """``sweep.csv`` (one row per run), ``sweep.json`` (score, direction, rows, per-setting summary) and
    ``summary.md`` (the summary as a markdown table) in ``out``.

    Args:
        rows: the sweep's rows (``run_settings``).
        out: the folder to write (created).
        score: the report key the runs are scored by (``selection_score``).
        higher_is_better: the score's direction, recorded beside it.
    """
    out.mkdir(parents=True, exist_ok=True)
    write_csv(rows, out / "sweep.csv")
    summary = summarize(rows, score)
    result = {"score": score, "higher_is_better": higher_is_better, "rows": rows, "summary": summary}
    write_atomic(out / "sweep.json", lambda t: Path(t).write_text(json.dumps(result, indent=1)))
    write_atomic(out / "summary.md", lambda t: Path(t).write_text(summary_markdown(summary, score, higher_is_better)))


def summary_markdown(summary: list[dict], score: str, higher_is_better: bool) -> str:
    """``summarize``'s rows as a markdown table, with the score and its direction named."""
    lines = [f"| setting | DoF | DoF % | {score} (mean ± std) | seeds |", "|---|---|---|---|---|"]
    lines += [f"| {r['setting']} | {r['dof']:,} | {100 * r['dof_fraction']:.2f} | {r['mean']:.4f} ± {r['std']:.4f} "
              f"| {r['seeds']} |" for r in summary]
    lines += ["", f"Score: {score}, the task's selection metric on its evaluation split "
                  f"({'higher' if higher_is_better else 'lower'} is better)."]
    return "\n".join(lines) + "\n"


_MOVED = {  # removed public names, importable for one more release: name -> where it went
    "fit_loglinear": "the one line fit is experiments/stats.py's line_fit (experiments/sweep_fit.py fits a sweep "
                     "folder's score against log10(DoF))",
    "plot": "experiments/sweep_fit.py plots a sweep folder's score against DoF",
    "split_of": "modelring.sweep.selection_score(cfg) names a run's score, split included, for every task",
}


def __getattr__(name: str):
    if name in _MOVED:
        warnings.warn(f"modelring.sweep.{name} is deprecated and will be removed in the next release: "
                      f"{_MOVED[name]}", DeprecationWarning, stacklevel=2)
        from . import _sweep_legacy
        return getattr(_sweep_legacy, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
