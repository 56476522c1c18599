"""Issue 22, block 1: the schedule probe. Does the 10-epoch schedule, not capacity, bound the gap between dense and
RPG on Fashion-MNIST ResNet-20? (The plan, fixed before the first run: docs/results/schedule_probe/plan.md.)

Arms: dense, a 10% and a 1% global ring (stem and classifier free, element-wise wiring) at 30 epochs, and the same
three at 10 epochs (the bridge to the committed 10-epoch campaign, run in the same session on the same machine).
Seed-major: every arm of a seed runs before the next seed, 10-epoch arms of a seed first. lr 0.2 for every arm
(chosen on validation by the issue-13 pilot for dense, 3% and 0.3% at 10 epochs; not re-chosen here).

The decision (on validation, never on the test set): the final-epoch validation gap dense - ring 10% at 30 epochs,
mean over the seeds; above 0.01, the equal-DoF block (2) and the DoF-law block (5) move to 30 epochs. Pooled-variance
contrasts (sigma pooled over all six arms) are the primary statistics, Welch the check. Each final model is then
scored once on the full test set (reported; nothing is chosen on it). Resumable; run one core, one thread:

    taskset -c 1 python experiments/schedule_probe.py --seeds 0 1 --threads 1
Writes docs/results/schedule_probe/{README.md, schedule_probe.csv, .json, metrics/, runs/}.
"""
from __future__ import annotations

import statistics
import sys

from stats import pooled_contrast, welch
from validation import compare_arms, slug

EPOCHS = (10, 30)
RPG_ARMS = {"ring 0.1": {"ring.size": 0.1}, "ring 0.01": {"ring.size": 0.01}}
LR = 0.2
DECISION_GAP = 0.01


def label(arm: str, epochs: int) -> str:
    return f"{arm}, {epochs} epochs"


def arms(_args=None) -> dict[str, dict]:
    """Label -> settings, in run order within a seed: the 10-epoch bridge first, then the 30-epoch arms."""
    kinds = {"dense": {"method": "dense"}, **RPG_ARMS}
    return {label(kind, epochs): {**keys, "train.epochs": epochs} for epochs in EPOCHS for kind, keys in kinds.items()}


def contrasts(values: dict[str, list[float]], score: str) -> list[str]:
    """The probe's table for one score: each gap dense - ring at 10 and at 30 epochs, how the gap changes, and each
    arm's gain from 10 to 30 epochs; pooled-variance contrast first, Welch beside it."""
    v = {k: values[slug(k)] for k in arms() if len(values.get(slug(k), [])) >= 2}
    lines = ["", f"{score}: contrasts (sigma pooled over the arms with two or more seeds; Welch as the check):", "",
             "| contrast | estimate [95% CI] (pooled) | p (pooled) | Welch diff [95% CI] | p (Welch) |",
             "|---|---|---|---|---|"]
    rows, short, long = [], EPOCHS[0], EPOCHS[1]
    for arm in RPG_ARMS:
        for epochs in EPOCHS:
            rows.append((f"dense - {arm} at {epochs} epochs", {label("dense", epochs): 1, label(arm, epochs): -1}))
        rows.append((f"change of that gap, {long} - {short} epochs",
                     {label("dense", long): 1, label(arm, long): -1, label("dense", short): -1, label(arm, short): 1}))
    for arm in ("dense", *RPG_ARMS):
        rows.append((f"gain of {arm}, {long} - {short} epochs", {label(arm, long): 1, label(arm, short): -1}))
    for name, weights in rows:
        if not all(k in v for k in weights):
            continue
        c = pooled_contrast(v, weights)
        pair = [k for k, w in weights.items()]
        check = "" if len(pair) != 2 else welch(v[pair[1]], v[pair[0]])
        lines.append(f"| {name} | {c['estimate']:+.4f} [{c['estimate'] - c['ci']:+.4f}, {c['estimate'] + c['ci']:+.4f}]"
                     f" | {c['p']:.3f} | " + (f"{check['diff']:+.4f} [{check['diff'] - check['ci']:+.4f}, "
                                               f"{check['diff'] + check['ci']:+.4f}] | {check['p']:.3f} |"
                                               if check else "(interaction: pooled only) | |"))
    if v:
        sigma = pooled_contrast(v, {next(iter(v)): 1})["sigma"]
        lines.append(f"\nPooled seed sigma ({score}): {sigma:.4f}.")
    return lines


def decision(values: dict[str, list[float]]) -> list[str]:
    """The plan's rule, read on validation only."""
    long = EPOCHS[1]
    dense, ring = values.get(slug(label("dense", long)), []), values.get(slug(label("ring 0.1", long)), [])
    if not dense or not ring:
        return ["", "Decision (plan): not yet (needs both 30-epoch arms dense and ring 0.1)."]
    gap = statistics.fmean(dense) - statistics.fmean(ring)
    move = gap > DECISION_GAP
    return ["", f"Decision (plan, validation): gap dense - ring 0.1 at {long} epochs = {gap:+.4f} over "
                f"{min(len(dense), len(ring))} seed(s) -> {'above' if move else 'not above'} {DECISION_GAP}: blocks 2 "
                f"and 5 {f'move to {long} epochs' if move else 'stay at 10 epochs'}."]


def figure(results, values: dict[str, list[float]]) -> list[str]:
    """schedule_probe.png: mean validation top-1 per epoch of every arm (10-epoch bridge dashed), from the per-epoch
    metrics beside the table; the final values with their 95% CI (t) when an arm has two or more seeds."""
    import csv
    from pathlib import Path

    from results_table import pyplot, save_figure
    from stats import mean_ci

    plt = pyplot()
    if plt is None:
        return []
    fig, ax = plt.subplots(figsize=(7, 4.2))
    colours = {"dense": "black", **dict(zip(RPG_ARMS, ("tab:blue", "tab:orange")))}
    for epochs in EPOCHS:
        for arm, colour in colours.items():
            runs = sorted(Path(results, "metrics").glob(f"{slug(label(arm, epochs))}_seed*.csv"))
            curves = [[float(r["val_top1"]) for r in csv.DictReader(f.open())] for f in runs]
            curves = [c for c in curves if len(c) == epochs]
            if not curves:
                continue
            mean = [sum(c[e] for c in curves) / len(curves) for e in range(epochs)]
            style = "--" if epochs == EPOCHS[0] else "-"
            ax.plot(range(1, epochs + 1), mean, style, color=colour, label=f"{arm}, {epochs} epochs (n={len(curves)})")
            final = values.get(slug(label(arm, epochs)), [])
            if len(final) >= 2:
                m, ci = mean_ci(final)
                ax.errorbar([epochs], [m], yerr=[ci], color=colour, capsize=3)
    ax.set_ylim(0.8, 0.95)
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation top-1 (5,000 held-out images;\naxis cut at 0.80: lr 0.2 swings lower early)", fontsize=8)
    ax.set_title("Does a longer schedule widen the dense-RPG gap? (Fashion-MNIST ResNet-20)", fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    save_figure(fig, Path(results) / "schedule_probe.png")
    return ["", "![validation top-1 per epoch](schedule_probe.png)"]


def extra(args):
    def lines(values):
        import csv
        from pathlib import Path

        out = decision(values) + figure(args.results, values) + contrasts(values, "Validation top-1 (final epoch)")
        path = Path(args.results) / "schedule_probe.csv"
        rows = list(csv.DictReader(path.open())) if path.is_file() else []
        tests: dict[str, list[float]] = {}
        for r in rows:
            if r.get("test_top1"):
                tests.setdefault(r["label"], []).append(float(r["test_top1"]))
        return out + contrasts(tests, "Test top-1 (final models; reported, nothing chosen on it)")
    return lines


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--lr" not in argv:
        argv += ["--lr", str(LR)]
    return compare_arms(argv, __doc__, stem="schedule_probe", title="Schedule probe: 10 against 30 epochs (issue 22, "
                        "block 1)", arms=arms, reference=label("dense", 30), extra=extra,
                        what="Dense ResNet-20 and global rings of 10% and 1% of its generated weights (stem and "
                             "classifier free), each at 10 and at 30 epochs")


if __name__ == "__main__":
    sys.exit(main())
