"""Shared by the issue-13/22/24 experiments: run a plan of (setting, seed) on a validation split, resumably, and
write the table after every finished run (per-arm mean with 95% t-interval, comparisons against a reference arm
with 95% Welch intervals, Holm-adjusted p and the MDE from the pooled seed sigma), copying every run's per-epoch
metrics.

Each script gives its plan, its reference arm and its text; runs are ``modelring train`` runs of a recipe (by
default ``configs/fmnist_resnet20_rpg.yaml``; the language-model experiments pass theirs) through
``modelring.sweep.run_settings`` (finished runs reused when their stored config matches, killed runs resumed from
last.pt), scored by the recipe task's selection metric.
"""
from __future__ import annotations

import csv
import json
import shutil
import subprocess
import time
from pathlib import Path

from claims import against_reference, verdict
from results_table import command_line, machine, write_markdown, write_rows
from stats import mean_ci

from modelring.sweep import run_settings

RECIPE = "configs/fmnist_resnet20_rpg.yaml"


def slug(label: str) -> str:
    """A run-folder-friendly form of an arm's label ("per layer, global init std" -> "per-layer_global-init-std")."""
    return label.replace(", ", "_").replace(" ", "-")


def commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def overrides(args) -> list[str]:
    """The common schedule: ``args.train`` training images, ``args.val`` held out, ``args.epochs`` epochs (in bf16
    autocast with ``args.amp``)."""
    amp = ["train.amp=true"] if getattr(args, "amp", False) else []
    return [f"data.root={args.root}", f"data.train_limit={args.train}", f"data.val_size={args.val}",
            f"train.epochs={args.epochs}", "train.progress=false", "out.tensorboard=false",
            f"train.threads={getattr(args, 'threads', 2)}", *amp]


def schedule_text(args, epochs_per_arm: bool = False) -> str:
    """The training schedule every run shares, read from the recipe and the common overrides (never typed by hand,
    so the tables cannot misstate it). ``epochs_per_arm``: the arms set their own number of epochs."""
    from modelring.config import load_config

    t = load_config(RECIPE, overrides(args))["train"]
    momentum = f"SGD{' Nesterov' if t['nesterov'] else ''} momentum {t['momentum']:g}"
    epochs = "the number of epochs its label names" if epochs_per_arm else f"{t['epochs']} epochs"
    return (f"{args.train:,} training images, {epochs}, {momentum}, batch {t['batch_size']}, weight decay "
            f"{t['weight_decay']:g}, {t['schedule']} schedule after a {t['warmup_epochs']:g}-epoch linear warm-up"
            f"{', bf16 autocast (train.amp)' if t['amp'] else ''}; "
            f"scored on {args.val:,} validation images held out of the training set (final-epoch validation top-1)")


def add_arguments(parser, runs: str, results: str) -> None:
    parser.add_argument("--root", default="/usr/share/datasets/fashion-mnist")
    parser.add_argument("--runs", default=runs)
    parser.add_argument("--results", default=results)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--train", type=int, default=20000)
    parser.add_argument("--val", type=int, default=5000)
    parser.add_argument("--limit-runs", type=int, default=None, help="stop after this many runs of the plan")
    parser.add_argument("--threads", type=int, default=2,
                        help="torch threads per run (issue 22: 1, with the process pinned to one core by taskset)")
    parser.add_argument("--amp", action="store_true",
                        help="bf16 autocast on CPU (train.amp=true): 1.8x faster on AMX machines; one precision per "
                             "campaign, it changes the digits")


def arm_plan(arms: dict[str, dict], lr: float, seeds: list[int], common: dict) -> list[tuple[dict, int]]:
    """(setting, seed) in run order: seed-major, so every arm grows together; an arm's own keys (its own
    ``train.lr`` too) override the common ones."""
    return [({"label": slug(label), "train.lr": lr, **common, **keys}, seed) for seed in seeds
            for label, keys in arms.items()]


def compare_arms(argv, doc: str, *, stem: str, title: str, arms, reference: str, what: str,
                 common: dict | None = None, extra=None, options=None) -> int:
    """A script comparing ``arms`` (label -> settings, or a function of the parsed arguments giving them) with the
    same seeds and the lr the pilot chose (``--lr``, ``--seeds``; an arm's own ``train.lr`` wins): every seed runs
    all arms before the next seed starts, so every arm grows together. ``options(parser)`` adds arguments."""
    import argparse

    import torch

    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    add_arguments(parser, f"runs/{stem}", f"docs/results/{stem}")
    parser.add_argument("--lr", type=float, required=True, help="the lr the pilot chose on validation")
    parser.add_argument("--seeds", type=int, nargs="+", required=True)
    if options:
        options(parser)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    arms = arms(args) if callable(arms) else arms
    plan = arm_plan(arms, args.lr, args.seeds, common or {})
    schedule = schedule_text(args, epochs_per_arm=any("train.epochs" in keys for keys in arms.values()))
    run_plan(plan, args, stem=stem, title=title, reference=slug(reference), command=command_line(stem, argv),
             extra=extra(args) if extra else None, test=True,
             description=f"{what}, lr {args.lr}, {schedule}; each final model is then scored once on "
                         "the full test set (the final numbers; nothing is chosen on them).")
    return 0


METRIC_NAMES = {"top1": "top-1", "bpb": "bits per byte", "pckh": "PCKh@0.5"}  # how the tables name a selection metric


def run_plan(plan: list[tuple[dict, int]], args, *, stem: str, title: str, description: str,
             reference: str | None, command: str, extra=None, test: bool = False, recipe: str = RECIPE,
             schedule: list[str] | None = None) -> list[dict]:
    """Train every (setting, seed) of ``plan`` in order; rewrite the tables after each run; return the rows.

    ``recipe`` and ``schedule`` (the overrides every run shares; default: ``overrides(args)``, the Fashion-MNIST
    schedule) say what trains; the tables use the recipe task's selection score (``val_top1``, ``val_bpb``, ...).
    With ``test``, every finished run's final model is also scored once on the full test set (``test_numbers``):
    the final numbers, reported beside the validation ones; nothing is chosen on them."""
    from modelring.config import load_config
    from modelring.sweep import selection_score

    started, rows = time.time(), []
    runs, out = Path(args.runs), Path(args.results)
    schedule = overrides(args) if schedule is None else schedule
    score, higher = selection_score(load_config(recipe, schedule))
    restore_finished(out, runs)
    for setting, seed in plan[: args.limit_runs]:
        for r in run_settings(recipe, [setting], seeds=[seed], overrides=schedule, out=runs):
            rows.append({**r, "label": setting["label"], **(test_numbers(runs / r["run"]) if test else {})})
        write_tables(rows, runs, out, stem=stem, title=title, description=description, reference=reference,
                     command=command, started=started, extra=extra, metric=score.removeprefix("val_"),
                     higher=higher)
    return rows


def test_numbers(run: Path) -> dict:
    """The run's final model (``model.safetensors``) on the full test set (its config with its task's
    ``test_overrides``: ``data.val_size=null``, or ``multitask.val_areas=[]``),
    as ``test_*`` columns; computed once and kept in the run's ``test.json`` (committed with the results, so a fresh
    machine does not need the model again)."""
    path = run / "test.json"
    if not path.is_file():
        from modelring.config import load_config
        from modelring.loop import evaluate_on_split
        from modelring.atomic import write_atomic

        metrics = evaluate_on_split(load_config(run / "config.yaml", test_overrides(run)), final_model(run))
        numbers = {f"test_{k}": v for k, v in metrics.items() if not k.startswith("_")}
        write_atomic(path, lambda tmp: Path(tmp).write_text(json.dumps(numbers, indent=1)))
    return json.loads(path.read_text())


def test_overrides(run: Path) -> list[str]:
    """The overrides that point a finished run's evaluation at the test split (its task's ``test_overrides``)."""
    from modelring.config import load_config
    from modelring.tasks import get_task

    return get_task(load_config(run / "config.yaml")["task"]["name"]).test_overrides()


def final_model(run: Path):
    """A finished run's final model (``model.safetensors``), rebuilt as its method trains it: a ring adapter file
    goes back onto its base (``adapter.base``), a peft run's tensors back into the model the method wraps, any
    other model file loads on its own."""
    import modelring as mr
    from modelring.config import load_config

    cfg = load_config(run / "config.yaml")
    if cfg["method"] == "adapter":
        return mr.load(run / "model.safetensors", model=mr.load(cfg["adapter"]["base"]))
    if cfg["method"] != "peft":
        return mr.load(run / "model.safetensors")
    from safetensors.torch import load_file

    from modelring.loop import build_model
    from modelring.tasks import get_task

    task = get_task(cfg["task"]["name"])
    model = build_model(task, cfg, task.build_data(cfg)[0])
    state = load_file(run / "model.safetensors")
    result = model.load_state_dict(state, strict=False)  # a tensor shared by several names is stored once
    current = model.state_dict(keep_vars=True)
    stored = {current[k].data_ptr() for k in state}
    wrong = [k for k in result.missing_keys if current[k].data_ptr() not in stored] + result.unexpected_keys
    if wrong:
        raise ValueError(f"{run / 'model.safetensors'} does not fit the model its config builds: {wrong[:4]}")
    return model


KEPT = ("config.yaml", "metrics.csv", "test.json", "report.json")  # report last: it marks a run finished


def restore_finished(out: Path, runs: Path) -> None:
    """Put back the report, config (and test numbers) of every finished run committed under ``out/runs`` whose run
    folder is gone (a fresh machine): the sweep then reuses it after checking its config, instead of training it
    again."""
    for saved in sorted((out / "runs").glob("*/report.json")):
        folder = runs / saved.parent.name
        if not (folder / "report.json").exists():
            folder.mkdir(parents=True, exist_ok=True)
            for name in KEPT:
                if (saved.parent / name).is_file():
                    shutil.copyfile(saved.parent / name, folder / name)


def arm_cell(values: list[float]) -> str:
    """An arm's mean with its 95% t-interval (the mean alone for one seed)."""
    mean, ci = mean_ci(values)
    return f"{mean:.4f}" + (f" [{mean - ci:.4f}, {mean + ci:.4f}]" if len(values) > 1 else "")


def comparison_lines(values: dict[str, list[float]], reference: str | None, family: str, heading: str) -> list[str]:
    """Every arm with two or more seeds against ``reference``: Welch diff, 95% CI, p, Holm-adjusted p, reading."""
    found = against_reference(family, values, reference)
    if found is None:
        return []
    compared, sigma = found
    lines = ["", f"{heading}, against `{reference}` (pooled seed sigma {sigma:.4f}; Holm over {len(compared)} "
                 "comparisons):", "", "| setting | diff [95% CI] | p | p (Holm) | reading |", "|---|---|---|---|---|"]
    return lines + [f"| {r['b']} | {r['diff']:+.4f} [{r['diff'] - r['ci']:+.4f}, {r['diff'] + r['ci']:+.4f}] | "
                    f"{r['p']:.3f} | {r['p_holm']:.3f} | {verdict(r)} |" for r in compared]


def write_tables(rows: list[dict], runs: Path, out: Path, *, stem: str, title: str, description: str,
                 reference: str | None, command: str, started: float, extra=None, metric: str = "top1",
                 higher: bool = True) -> None:
    """The table of ``rows`` (per arm: final-epoch validation ``metric``, the best epoch's, the test one), the
    comparisons against ``reference``, and the per-epoch metrics and run files beside it."""
    write_rows(rows, out, stem)
    (out / "metrics").mkdir(parents=True, exist_ok=True)
    for r in rows:  # per-epoch metrics of every run beside the table, and what a fresh machine needs to reuse it
        shutil.copyfile(runs / r["run"] / "metrics.csv", out / "metrics" / f"{r['run']}.csv")
        (out / "runs" / r["run"]).mkdir(parents=True, exist_ok=True)
        for name in KEPT:
            if (runs / r["run"] / name).is_file():
                shutil.copyfile(runs / r["run"] / name, out / "runs" / r["run"] / name)
        if (runs / r["run"] / "grad_energy.jsonl").is_file():
            shutil.copyfile(runs / r["run"] / "grad_energy.jsonl", out / "metrics" / f"{r['run']}.grad_energy.jsonl")
    groups: dict[str, list[dict]] = {}
    for r in rows:
        groups.setdefault(r["label"], []).append(r)
    name, best = METRIC_NAMES.get(metric, metric), (max if higher else min)
    tested = all(f"test_{metric}" in r for r in rows)
    lines = [f"# {title}", "", f"Command: `{command}` at commit `{commit()}`  ",
             f"Machine: {machine()}. Training time so far: {sum(r.get('wall_s', 0) for r in rows) / 60:.1f} min over "
             f"{len(rows)} runs (this invocation {(time.time() - started) / 60:.1f} min).", "", description, "",
             f"| setting | seeds | DoF | val {name} (final) [95% CI] | best epoch val {name} ({best.__name__}) |"
             + (f" test {name} (final model) [95% CI] |" if tested else ""), "|---|---|---|---|---|" + "---|" * tested]
    for label, members in groups.items():
        lines.append(f"| {label} | {','.join(str(m['seed']) for m in members)} | {members[0]['dof']:,} | "
                     f"{arm_cell([m[f'val_{metric}'] for m in members])} | "
                     f"{best(m[f'best_val_{metric}'] for m in members):.4f} |"
                     + (f" {arm_cell([m[f'test_{metric}'] for m in members])} |" if tested else ""))
    values = {label: [m[f"val_{metric}"] for m in members] for label, members in groups.items()}
    lines += comparison_lines(values, reference, title, f"Validation {name} (the score fixed before the runs)")
    if tested:
        lines += comparison_lines({label: [m[f"test_{metric}"] for m in members] for label, members in groups.items()},
                                  reference, f"{title} (test)", f"Test {name} of the final models (the final numbers; "
                                  "nothing was chosen on them)")
    lines += extra(values) if extra else []
    if stage_figure(groups, out, out / f"{stem}.png", title=title, metric=metric, tested=tested):
        lines += ["", f"Figure: [{stem}.png]({stem}.png) (validation {name} per epoch, mean over seeds; final "
                      "numbers with 95% t-intervals)."]
    lines += ["", "Per-epoch metrics of every run: [metrics/](metrics/)."]
    write_markdown(out / "README.md", lines)


def stage_figure(groups: dict[str, list[dict]], out: Path, path: Path, *, title: str, metric: str,
                 tested: bool) -> bool:
    """``path``: left, each setting's validation ``metric`` per epoch (mean over its seeds, read from
    the per-epoch files beside the table); right, each setting's final validation (and test) number, mean with its
    95% t-interval (a dot alone for one seed). False without matplotlib."""
    from results_table import pyplot, save_figure

    plt = pyplot()
    if plt is None:
        return False
    name = METRIC_NAMES.get(metric, metric)
    fig, (curves, finals) = plt.subplots(1, 2, figsize=(11, 0.9 + 0.32 * max(len(groups), 8)),
                                         gridspec_kw={"width_ratios": [1.2, 1]})
    for i, (label, members) in enumerate(groups.items()):
        per_run = []
        for m in members:
            with open(out / "metrics" / f"{m['run']}.csv") as f:
                per_run.append([float(r[f"val_{metric}"]) for r in csv.DictReader(f)])
        epochs = min(len(v) for v in per_run)
        curves.plot(range(1, epochs + 1), [sum(v[e] for v in per_run) / len(per_run) for e in range(epochs)],
                    ".-", ms=3, label=f"{label} (n={len(members)})", color=f"C{i % 10}")
        for j, split in enumerate(("val", "test") if tested else ("val",)):
            mean, ci = mean_ci([m[f"{split}_{metric}"] for m in members])
            finals.errorbar(mean, i + 0.15 * j, xerr=ci if len(members) > 1 else None, fmt="o" if j == 0 else "s",
                            color=f"C{i % 10}", mfc=None if j == 0 else "white", capsize=3)
    curves.set_xlabel("epoch")
    curves.set_ylabel(f"validation {name}")
    curves.legend(fontsize=6, loc="best")
    finals.set_yticks(range(len(groups)), list(groups), fontsize=7)
    finals.invert_yaxis()
    finals.set_xlabel(f"final {name}: validation (dots)" + (", test (squares)" if tested else "") + "; 95% CI")
    fig.suptitle(title, fontsize=9)
    save_figure(fig, path)
    return True


def landed_rows(results: Path, stage: str) -> list[dict]:
    """The rows of ``results/<stage>/<stage>.csv``: every run of that stage that has landed (none before)."""
    path = Path(results) / stage / f"{stage}.csv"
    return list(csv.DictReader(path.open())) if path.is_file() else []


def landed_scores(results: Path, stage: str, score: str) -> dict[str, float]:
    """Label -> ``score`` (e.g. ``val_bpb``) of every landed run of ``stage``."""
    return {r["label"]: float(r[score]) for r in landed_rows(results, stage)}


def run_while_grids_widen(plan_of, run, *, limit_runs: int | None) -> None:
    """An lr stage whose grids widen: ``run(plan_of())`` again after every pass, the plan recomputed from the runs
    that have landed (a grid whose best lr sits at its edge gets its next rung), until a pass adds nothing; with
    ``--limit-runs`` (``limit_runs`` not None) after the first pass."""
    done: list = []
    while True:
        plan = plan_of()
        if plan == done or (limit_runs is not None and done):
            return
        run(plan)
        done = plan


def ladder_grid(score_of, base: tuple[float, ...], ladder: tuple[float, ...], *,
                higher_is_better: bool) -> tuple[list[float], float | None]:
    """A learning-rate grid that widens past a winning edge: ``base`` first, then one rung of ``ladder`` beyond an
    edge whose lr wins, until the winner is inside the grid or at the ladder's end.

    Args:
        score_of: lr -> the landed run's score, or None while it has not landed.
        base: the first grid (rungs of ``ladder``).
        ladder: every lr a grid may reach, ascending.
        higher_is_better: whether a higher score wins (ties go to the lower lr).

    Returns:
        (the lrs to run so far, the chosen lr or None until the grid has landed and stopped widening).
    """
    grid = list(base)
    while True:
        got = [score_of(lr) for lr in grid]
        if any(v is None for v in got):
            return grid, None
        best = min(zip(got, grid), key=lambda pair: (-pair[0] if higher_is_better else pair[0], pair[1]))[1]
        rung = ladder.index(best)
        if best == grid[0] and rung > 0:
            grid.insert(0, ladder[rung - 1])
        elif best == grid[-1] and rung < len(ladder) - 1:
            grid.append(ladder[rung + 1])
        else:
            return grid, best
