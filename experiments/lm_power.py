"""Issue 24, item 3: the paper's power law where capacity binds, a language model's test bits per byte against its
degrees of freedom, for a dense width family and for RPG rings on the largest model. The plan, fixed before the
first run: docs/results/lm_plan.md (item 3).

- ``dense``: GPTs of depth 4 at widths 64, 96, 128, 192, 256, 384 (heads = width / 32), every parameter trained;
- ``rpg``: the width-384 GPT with one global ring over its block Linear weights and both embeddings, 7 geometric
  ring sizes from 10 k to 3.2 M entries; what stays free (LayerNorms, biases: about 21 k) is counted in the DoF.

Every run reads the same tokens of Shakespeare (``--tokens``, set from the pilot's tokens/s, the same for both
families). Stages, resumable, one run at a time:

    python experiments/lm_power.py lr      # seed 0 at both ends of each family on an lr ladder (widened at an edge)
    python experiments/lm_power.py seeds   # every size at the lr of its family's nearer end (log scale), seeds 0-2
    python experiments/lm_power.py fit     # the fits, the equal-DoF comparison and the figure (no training)

Writes docs/results/lm_power/<stage>/ and docs/results/lm_power/fit.md, fit.json, lm_power.png.
"""
from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from pathlib import Path

import torch

from lm_targets import RECIPE, schedule
from results_table import command_line, pyplot, save_figure, write_markdown
from stats import line_fit, mean_ci, saturating_fit, t_quantile
from validation import ladder_grid, landed_rows as landed, run_plan, run_while_grids_widen, slug

from modelring.atomic import write_atomic

WIDTHS = (64, 96, 128, 192, 256, 384)
RINGS = tuple(round(10_000 * 10 ** (k * 2.5 / 6)) for k in range(7))  # 10 k ... 3.16 M entries
TARGETS = ["blocks.*.attn.*.weight", "blocks.*.mlp.*.weight", "tok_emb.weight", "pos_emb.weight"]
LADDER = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2)
BASE = (3e-4, 1e-3, 3e-3)
SEEDS = (0, 1, 2)


def gpt(width: int) -> dict:
    return {"model.kwargs.depth": 4, "model.kwargs.width": width, "model.kwargs.heads": max(1, width // 32)}


def arms() -> dict[str, dict]:
    """Label -> settings (without lr and seed), by family, smallest first."""
    out = {f"dense w{w}": {"method": "dense", **gpt(w)} for w in WIDTHS}
    out |= {f"rpg r{r}": {"ring.size": r, "ring.include": TARGETS, "ring.exclude": None, **gpt(WIDTHS[-1])}
            for r in RINGS}
    return out


def family(arm: str) -> str:
    return arm.split()[0]


def ends(every: dict[str, dict]) -> dict[str, tuple[str, str]]:
    """Each family's smallest and largest arm (the lr is chosen at both)."""
    out: dict[str, list[str]] = {}
    for arm in every:
        out.setdefault(family(arm), []).append(arm)
    return {fam: (members[0], members[-1]) for fam, members in out.items()}


def label(arm: str, lr: float) -> str:
    return slug(f"{arm}, lr {lr:g}")


def lr_of(every: dict[str, dict], results: Path) -> dict[str, float | None]:
    """Arm -> its lr: each end's choice on the ladder (lowest validation bits per byte at seed 0), and for the
    sizes between, the choice of the nearer end on a log scale of DoF-bearing size (None until chosen)."""
    scores = {r["label"]: float(r["val_bpb"]) for r in landed(results, "lr")}
    chosen = {arm: ladder_grid(lambda lr, arm=arm: scores.get(label(arm, lr)), BASE, LADDER,
                               higher_is_better=False)[1]
              for pair in ends(every).values() for arm in pair}
    out = {}
    for arm in every:
        low, high = ends(every)[family(arm)]
        size, lo, hi = (_size(a) for a in (arm, low, high))
        nearer = high if math.log(size / lo) >= math.log(hi / size) else low
        out[arm] = chosen[nearer]
    return out


def _size(arm: str) -> int:
    return int(arm.split()[1][1:])


def fit(results: Path) -> dict:
    """The fits of the seeds stage: per family the line of log10 test bpb against log10 DoF (exponent with its 95%
    interval, R², lack of fit with the seeds as pure error) and the floor law y = a + b DoF^-c against the pure
    power law (extra-sum-of-squares F); and every RPG size whose DoF lies inside the dense family's range against
    the dense line at that DoF (difference with a 95% interval from the RPG seeds and the line's prediction)."""
    rows = [r for r in landed(results, "seeds") if r.get("test_bpb")]
    by_family: dict[str, list[dict]] = {}
    for r in rows:
        by_family.setdefault(family(r["label"].replace("-", " ", 1)), []).append(r)
    out: dict = {"families": {}, "equal_dof": []}
    for fam, members in by_family.items():
        xs = [math.log10(float(r["dof"])) for r in members]
        ys = [math.log10(float(r["test_bpb"])) for r in members]
        if len(set(xs)) < 2 or len(xs) < 3:
            continue
        line = line_fit(xs, ys)
        floor = saturating_fit([float(r["dof"]) for r in members], [float(r["test_bpb"]) for r in members]) \
            if len(members) >= 4 else None
        out["families"][fam] = {"line": line, "floor": floor, "runs": len(members), "sizes": len(set(xs))}
    dense = out["families"].get("dense")
    if dense:
        d = [(math.log10(float(r["dof"])), math.log10(float(r["test_bpb"]))) for r in by_family["dense"]]
        n, mx = len(d), statistics.fmean(x for x, _ in d)
        sxx = sum((x - mx) ** 2 for x, _ in d)
        s = math.sqrt(sum((y - dense["line"]["intercept"] - dense["line"]["slope"] * x) ** 2 for x, y in d) / (n - 2))
        lo, hi = min(x for x, _ in d), max(x for x, _ in d)
        sizes: dict[str, list[float]] = {}
        for r in by_family.get("rpg", []):
            sizes.setdefault(r["dof"], []).append(float(r["test_bpb"]))
        for dof, values in sorted(sizes.items(), key=lambda kv: int(kv[0])):
            x = math.log10(int(dof))
            if not lo <= x <= hi or len(values) < 2:
                continue
            predicted = 10 ** (dense["line"]["intercept"] + dense["line"]["slope"] * x)
            se_line = s * math.sqrt(1 / n + (x - mx) ** 2 / sxx) * predicted * math.log(10)  # delta method
            mean, ci = mean_ci(values)
            se_rpg = ci / t_quantile(0.975, len(values) - 1)
            se = math.sqrt(se_rpg ** 2 + se_line ** 2)
            df = se ** 4 / (se_rpg ** 4 / (len(values) - 1) + se_line ** 4 / (n - 2))  # Welch-Satterthwaite
            diff = mean - predicted
            out["equal_dof"].append({"dof": int(dof), "rpg_bpb": mean, "dense_line_bpb": predicted, "diff": diff,
                                     "ci": t_quantile(0.975, df) * se, "seeds": len(values)})
    return out


def write_fit(results: Path, command: str) -> dict:
    found = fit(results)
    write_atomic(results / "fit.json", lambda tmp: Path(tmp).write_text(json.dumps(found, indent=1)))
    lines = ["# The power law where capacity binds (issue 24, item 3)", "", f"Command: `{command}`", ""]
    for fam, f in found["families"].items():
        line = f["line"]
        lines.append(f"- {fam}: log10 test bpb = {line['intercept']:.4f} + ({line['slope']:.4f} ± "
                     f"{line['slope_ci']:.4f}) log10 DoF over {f['runs']} runs at {f['sizes']} sizes, R² "
                     f"{line['r2']:.3f}" + (f", lack of fit p {line['p_lack_of_fit']:.3f}" if "p_lack_of_fit" in line
                                              else ""))
        if f["floor"]:
            fl = f["floor"]["floor"]
            lines.append(f"  floor law bpb = {fl['a']:.4f} + {fl['b']:.4g} DoF^-{fl['c']:.3f}; against the pure power "
                         f"law F = {f['floor']['floor_f']:.2f}, p = {f['floor']['p_floor']:.3f}")
    if found["equal_dof"]:
        lines += ["", "| RPG DoF | RPG test bpb | dense line at that DoF | RPG - dense [95% CI] | reading |",
                  "|---|---|---|---|---|"]
        for e in found["equal_dof"]:
            reading = ("no detectable difference" if abs(e["diff"]) <= e["ci"]
                       else "RPG lower (better)" if e["diff"] < 0 else "RPG higher (worse)")
            lines.append(f"| {e['dof']:,} | {e['rpg_bpb']:.4f} | {e['dense_line_bpb']:.4f} | {e['diff']:+.4f} "
                         f"[{e['diff'] - e['ci']:+.4f}, {e['diff'] + e['ci']:+.4f}] | {reading} |")
    write_markdown(results / "fit.md", lines)
    figure(results, found)
    return found


def figure(results: Path, found: dict) -> None:
    plt = pyplot()
    rows = [r for r in landed(results, "seeds") if r.get("test_bpb")]
    if plt is None or not rows:
        return
    fig, ax = plt.subplots(figsize=(6, 4))
    for fam, colour in (("dense", "tab:blue"), ("rpg", "tab:red")):
        points: dict[int, list[float]] = {}
        for r in rows:
            if r["label"].startswith(fam):
                points.setdefault(int(r["dof"]), []).append(float(r["test_bpb"]))
        if not points:
            continue
        dofs = sorted(points)
        means = [mean_ci(points[d])[0] for d in dofs]
        errors = [mean_ci(points[d])[1] for d in dofs]
        ax.errorbar(dofs, means, yerr=errors, fmt="o", color=colour, capsize=3, label=fam)
        line = found["families"].get(fam, {}).get("line")
        if line:
            ax.plot(dofs, [10 ** (line["intercept"] + line["slope"] * math.log10(d)) for d in dofs], "-",
                    color=colour, alpha=0.6)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("degrees of freedom (trainable parameters)")
    ax.set_ylabel("test bits per byte (mean, 95% CI)")
    ax.legend()
    save_figure(fig, results / "lm_power.png")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("stage", choices=("lr", "seeds", "fit"))
    parser.add_argument("--root", default="data/text/shakespeare")
    parser.add_argument("--runs", default="runs/lm_power")
    parser.add_argument("--results", default="docs/results/lm_power")
    parser.add_argument("--tokens", type=int, default=4_000_000, help="training tokens of every run")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--context", type=int, default=256)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--arms", nargs="+", help="only these arm labels (e.g. 'dense w64' 'rpg r10000')")
    parser.add_argument("--limit-runs", type=int, default=None)
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    command = command_line("lm_power", argv)
    results = Path(args.results)
    if args.stage == "fit":
        write_fit(results, command)
        return 0
    if not Path(args.root).is_dir():
        raise SystemExit(f"no corpus at {args.root}: run `bash scripts/fetch_text.sh shakespeare` first")
    torch.set_num_threads(args.threads)
    every = {k: v for k, v in arms().items() if not args.arms or k in args.arms}
    stage = argparse.Namespace(**{**vars(args), "results": str(results / args.stage)})
    description = (f"{args.tokens:,} training tokens of {args.root} per run, AdamW, cosine; validation bits per byte "
                   "for every choice, test bits per byte of each final model once")

    def run(plan):
        run_plan(plan, stage, stem=args.stage, title=f"Power law ({args.stage})", reference=None, command=command,
                 test=True, recipe=RECIPE, schedule=schedule(args), description=description)

    if args.stage == "lr":
        def plan_of():
            scores = {r["label"]: float(r["val_bpb"]) for r in landed(results, "lr")}
            return [({"label": label(arm, lr), **every[arm], "train.lr": lr}, 0)
                    for pair in ends(every).values() for arm in dict.fromkeys(pair)
                    for lr in ladder_grid(lambda lr, arm=arm: scores.get(label(arm, lr)), BASE, LADDER,
                                          higher_is_better=False)[0]]
        run_while_grids_widen(plan_of, run, limit_runs=args.limit_runs)
        return 0
    lrs = lr_of(every, results)
    missing = sorted(arm for arm, lr in lrs.items() if lr is None)
    if missing:
        raise SystemExit(f"the lr stage has not chosen an lr for {missing} yet: run `lm_power.py lr` again")
    run([({"label": label(arm, lrs[arm]), **keys, "train.lr": lrs[arm]}, seed) for seed in SEEDS
         for arm, keys in every.items()])  # an end's seed 0 is its lr-stage run, reused
    return 0


if __name__ == "__main__":
    sys.exit(main())
