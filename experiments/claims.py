"""The paper's claims against the results committed in docs/results/, with the statistics the reading needs.

Every comparison: seeds per arm, means, difference with its 95% CI (Welch), Welch's p, Holm-adjusted p within its
experiment, and the minimum detectable difference (MDE, 80% power, alpha 0.05) from the pooled seed sigma of that
experiment. "no detectable difference (MDE x)" wherever the CI crosses zero. One-seed cells (multi-task ablation) get
paired sign tests over matched cells instead. Writes docs/results/claims.md; reads only committed CSVs.

Usage: python experiments/claims.py
"""
from __future__ import annotations

import csv
import math
import statistics
import sys
import textwrap
from pathlib import Path

from results_table import pyplot, save_figure, write_markdown
from stats import holm, line_fit, mde, mean_ci, pooled_contrast, t_quantile, welch

ROOT = Path(__file__).resolve().parents[1] / "docs" / "results"


def _rows(path: Path) -> list[dict]:
    with open(path) as f:
        return list(csv.DictReader(f))


def _values(rows, key, label, metric="test_top1"):
    return [float(r[metric]) for r in rows if r[key] == label]


def pooled_sigma(groups: list[list[float]]) -> float:
    """Pooled within-group standard deviation."""
    num = sum((len(g) - 1) * statistics.variance(g) for g in groups if len(g) > 1)
    den = sum(len(g) - 1 for g in groups if len(g) > 1)
    return math.sqrt(num / den) if den else math.nan


def compare(family: str, pairs: list[tuple[str, list[float], str, list[float]]], sigma: float) -> list[dict]:
    """Welch comparisons (b - a) with Holm adjustment over the family."""
    out = []
    for name_a, a, name_b, b in pairs:
        w = welch(a, b)
        out.append({"family": family, "a": name_a, "b": name_b, "n": f"{len(a)}/{len(b)}", "mean_a": statistics.fmean(a),
                    "mean_b": statistics.fmean(b), **w, "mde": mde(sigma, min(len(a), len(b)))})
    for row, p in zip(out, holm([r["p"] for r in out])):
        row["p_holm"] = p
    return out


def verdict(row: dict) -> str:
    """The reading of one comparison: a direction only where the CI excludes 0, and only as "uncorrected" unless
    the Holm-adjusted p is below 0.05 too."""
    if row["diff"] - row["ci"] > 0 or row["diff"] + row["ci"] < 0:
        higher = row["b"] if row["diff"] > 0 else row["a"]
        return f"{higher} higher" + ("" if row["p_holm"] < 0.05 else " (uncorrected; not significant after Holm)")
    return f"no detectable difference (MDE {row['mde']:.3f})"


def sign_test(wins: int, n: int) -> float:
    """Two-sided exact sign test p-value for ``wins`` of ``n`` paired comparisons."""
    k = max(wins, n - wins)
    return min(1.0, 2 * sum(math.comb(n, i) for i in range(k, n + 1)) / 2 ** n)


def equal_dof() -> tuple[list[dict], float]:
    rows = _rows(ROOT / "equal_dof" / "equal_dof.csv")
    budgets = ("0.01", "0.03", "0.08")
    groups = [_values(rows, "label", f"{m}_{b}") for m in ("rpg", "hashednets", "prune", "thin", "shallow")
              for b in budgets]
    sigma = pooled_sigma(groups)
    pairs = [(f"{other} {b}", _values(rows, "label", f"{other}_{b}"), f"RPG {b}", _values(rows, "label", f"rpg_{b}"))
             for b in budgets for other in ("hashednets", "prune", "thin", "shallow")]
    return compare("equal DoF (Fashion-MNIST, 1 epoch, 10k images)", pairs, sigma), sigma


def ring_ablation() -> tuple[list[dict], float]:
    rows = _rows(ROOT / "ring_ablation" / "ring_ablation.csv")
    labels = sorted({r["label"] for r in rows})
    sigma = pooled_sigma([_values(rows, "label", lab) for lab in labels])
    g = lambda lab: _values(rows, "label", lab)  # noqa: E731
    pairs = [("global ring", g("global"), "per stage", g("per_stage")),
             ("global ring", g("global"), "per layer", g("per_layer")),
             ("permute+reflect", g("global"), "permute, no reflect", g("permute_no_reflect")),
             ("permute+reflect", g("global"), "no permute, reflect", g("no_permute_reflect")),
             ("permute+reflect", g("global"), "neither", g("no_permute_no_reflect")),
             ("independent sampling", g("independent_sampling"), "even sampling", g("global"))]
    return compare("ring ablation (Fashion-MNIST, 3% ring, 1 epoch)", pairs, sigma), sigma


def pose() -> tuple[list[dict], float]:
    rows = _rows(ROOT / "pose" / "long" / "runs.csv")
    reuse, rpg = _values(rows, "setting", "reuse", "test_pckh"), _values(rows, "setting", "rpg", "test_pckh")
    sigma = pooled_sigma([reuse, rpg])
    return compare("pose (generated MPII layout, 10 epochs, equal DoF)", [("RPG", rpg, "CPM reuse", reuse)],
                   sigma), sigma


# issue 13's comparison experiments: (folder, reference arm, family title)
ISSUE13 = (("destructive", "element-wise_reflect",
            "destructive sharing, element-wise wiring (Fashion-MNIST, global 3% ring, 20k images x 10 epochs, test set)"),
           ("rings_decomposed", "global",
            "global vs local rings, decomposed (Fashion-MNIST, 3% in all, 20k images x 10 epochs, test set)"),
           ("dof_law", "dense", "each global ring size against dense (Fashion-MNIST ResNet-20, 20k images x 10 epochs, "
                                "test set)"))


def issue13(stem: str, reference: str, family: str) -> tuple[list[dict], float] | None:
    """Every arm of an issue-13 experiment with two or more seeds against its reference, on the test top-1 of the
    final models (the lr was chosen on validation by the pilot); None until the reference has two seeds."""
    path = ROOT / stem / f"{stem}.csv"
    if not path.is_file():
        return None
    rows = [r for r in _rows(path) if r.get("test_top1")]
    return against_reference(family, {label: _values(rows, "label", label)
                                      for label in dict.fromkeys(r["label"] for r in rows)}, reference)


def against_reference(family: str, values: dict[str, list[float]], reference: str | None
                      ) -> tuple[list[dict], float] | None:
    """Every arm with two or more seeds against ``reference`` (``compare``, sigma pooled over all arms), and that
    sigma; None until the reference and one other arm have two seeds."""
    ready = [label for label, v in values.items() if label != reference and len(v) >= 2]
    if len(values.get(reference, [])) < 2 or not ready:
        return None
    sigma = pooled_sigma(list(values.values()))
    return compare(family, [(reference, values[reference], label, values[label]) for label in ready], sigma), sigma


def law_fit(rows: list[dict], score: str = "test_top1") -> dict | None:
    """The log-linear law over the RPG runs of ``dof_law.csv`` rows (dense left out): ``stats.line_fit`` of
    ``score`` against log10(DoF), one point per run, with its reading as the analysis plan fixes it; None until
    there are three runs at two DoF values."""
    rpg = [r for r in rows if r["label"] != "dense" and r.get(score)]
    if len(rpg) < 3 or len({r["dof"] for r in rpg}) < 2:
        return None
    fit = line_fit([math.log10(float(r["dof"])) for r in rpg], [float(r[score]) for r in rpg])
    if fit["slope"] - fit["slope_ci"] <= 0 <= fit["slope"] + fit["slope_ci"]:
        reading = "no detectable trend"
    elif "p_lack_of_fit" not in fit:
        reading = "trend, linearity not testable (no repeated sizes)"
    elif fit["p_lack_of_fit"] < 0.05:
        reading = "not log-linear here (lack of fit)"
    else:
        reading = "log-linear here (no detectable departure from the line)" if fit["slope"] > 0 else \
            "accuracy falls with DoF"
    return {**fit, "reading": reading}


def law_lines() -> list[str]:
    """claims.md's section for the law (test and validation), empty until ``dof_law.csv`` has enough runs."""
    path = ROOT / "dof_law" / "dof_law.csv"
    fits = {s: law_fit(_rows(path), s) for s in ("test_top1", "val_top1")} if path.is_file() else {}
    if not fits or fits["test_top1"] is None:
        return []
    return ["## accuracy against DoF: log-linear law over the global-ring runs (Fashion-MNIST ResNet-20, 20k images "
            "x 10 epochs; test set primary)", "",
            f"Figure: [{FIGURES.name}/dof_law.png]({FIGURES.name}/dof_law.png).", "",
            *law_table(fits), ""]


def law_table(fits: dict[str, dict], f_test: bool = False) -> list[str]:
    """One row per score (``law_fit`` results by score column); ``f_test`` adds the lack-of-fit F and its df."""
    lof_head = "lack of fit F (df) | p (lack of fit)" if f_test else "lack of fit p"
    lines = [f"| score | runs | slope per decade [95% CI] | p (slope) | R² | {lof_head} | reading |",
             "|---|---|---|---|---|---|" + "---|" * (1 + f_test)]
    for score, fit in fits.items():
        if "p_lack_of_fit" not in fit:
            lof = "— | —" if f_test else "—"
        else:
            df = fit["lack_of_fit_df"]
            lof = (f"{fit['lack_of_fit_f']:.2f} ({df[0]}, {df[1]}) | " if f_test else "") + f"{fit['p_lack_of_fit']:.3f}"
        low, high = fit["slope"] - fit["slope_ci"], fit["slope"] + fit["slope_ci"]
        lines.append(f"| {score.replace('_top1', '')} | {fit['points']} | {fit['slope']:+.4f} [{low:+.4f}, "
                     f"{high:+.4f}] | {fit['p_slope']:.2g} | {fit['r2']:.3f} | {lof} | {fit['reading']} |")
    return lines


def multitask() -> list[dict]:
    """Paired sign tests over matched one-seed cells, on depth RMSE and normal RMSE (lower is better)."""
    tests = [t for metric in ("depth_rmse", "normal_rmse") for t in _multitask_tests(metric)]
    for test, p in zip(tests, holm([t["p"] for t in tests])):
        test["p_holm"] = p
    return tests


def _multitask_tests(metric: str) -> list[dict]:
    rows = [r for r in _rows(ROOT / "multitask" / "ablation.csv") if r["seed"] == "0" and r["permute"]]
    cell = {(r["reuse"], r["new_bn"], r["permute"], r["reflect"]): float(r[metric]) for r in rows}
    tests = []
    for name, key_a, key_b in (
            ("new BN vs shared BN (reuse)", lambda p, f: ("True", "True", p, f), lambda p, f: ("True", "False", p, f)),
            ("permutation on vs off", None, None), ("reflection on vs off", None, None)):
        if key_a is not None:
            pairs = [(cell[key_a(p, f)], cell[key_b(p, f)]) for p in ("True", "False") for f in ("True", "False")]
        elif name.startswith("permutation"):
            pairs = [(cell[(r, b, "True", f)], cell[(r, b, "False", f)]) for r, b in
                     (("False", "False"), ("True", "False"), ("True", "True")) for f in ("True", "False")]
        else:
            pairs = [(cell[(r, b, p, "True")], cell[(r, b, p, "False")]) for r, b in
                     (("False", "False"), ("True", "False"), ("True", "True")) for p in ("True", "False")]
        wins = sum(a < b for a, b in pairs)
        gains = [b - a for a, b in pairs]
        tests.append({"test": f"{name}, {metric.replace('_', ' ')}", "wins": wins, "pairs": len(pairs),
                      "p": sign_test(wins, len(pairs)), "median_gain": statistics.median(gains), "gains": gains})
    return tests


def comparisons() -> list[tuple[str, list[dict], float]]:
    """Every Welch comparison family in the committed results: (title, rows, pooled sigma), in claims.md's order."""
    found = [equal_dof(), ring_ablation(), pose(), *(f for f in (issue13(*spec) for spec in ISSUE13) if f is not None)]
    return [(rows[0]["family"], rows, sigma) for rows, sigma in found]


def equivalence_reading(diff: float, ci: float, margin: float, mde_value: float, higher: str, lower: str) -> str:
    """Issue 22's reading of one difference (``higher``/``lower``: what a positive/negative difference means):
    a direction only where the 95% interval excludes 0; "within ±margin" only where the whole interval lies inside
    the margin; otherwise "not resolved" with the MDE."""
    if diff - ci > 0:
        return f"{higher} (interval above 0)"
    if diff + ci < 0:
        return f"{lower} (interval below 0)"
    if -margin <= diff - ci and diff + ci <= margin:
        return f"within ±{margin:g}"
    return f"not resolved (MDE {mde_value:.4f})"


EQUIVALENCE_TOP1 = 0.005  # block 2's margin (equal_dof_plan.md)


def equal_size_lines() -> list[str]:
    """Block 2 (equal_dof_plan.md): per budget, every arm against RPG on the test top-1 of the final models, with
    sigma pooled over every arm of the budget (primary; Welch beside, Holm over the budget's arms), the equivalence
    margin ±0.005, and the pre-registered RPG vs HashedNets at 3%; ResNet-56 RPG against dense ResNet-20. Empty until
    the seeds stage has landed two seeds of RPG and one other arm."""
    path = ROOT / "equal_size" / "seeds" / "seeds.csv"
    if not path.is_file():
        return []
    rows = [r for r in _rows(path) if r.get("test_top1")]
    values: dict[str, list[float]] = {}
    for r in rows:
        values.setdefault(r["label"].split("_lr")[0], []).append(float(r["test_top1"]))
    lines = []
    for budget in ("3%", "1%"):
        arms = {a: v for a, v in values.items() if a.endswith(f"-{budget}")}
        rpg = arms.get(f"rpg-{budget}", [])
        others = [a for a, v in arms.items() if a != f"rpg-{budget}" and len(v) >= 2]
        if len(rpg) < 2 or not others:
            continue
        table = []
        for other in others:
            contrast = pooled_contrast(arms, {f"rpg-{budget}": 1, other: -1})
            w = welch(arms[other], rpg)
            table.append({"other": other, "n": f"{len(rpg)}/{len(arms[other])}", "c": contrast, "w": w,
                          "mde": mde(contrast["sigma"], min(len(rpg), len(arms[other])))})
        for row, p in zip(table, holm([t["c"]["p"] for t in table])):
            row["p_holm"] = p
        sigma, df = table[0]["c"]["sigma"], table[0]["c"]["df"]
        lines += [f"## equal size, {budget} budget (issue 22 block 2: Fashion-MNIST ResNet-20, 30 epochs, bf16, "
                  "test set)", "", f"Sigma pooled over the {len(arms)} arms of the budget: {sigma:.4f} ({df} df). "
                  "Difference = RPG minus the arm (test top-1); primary: pooled-variance interval and p, Holm over "
                  "the budget's arms; Welch as the check; equivalence margin ±0.005."
                  + (" RPG vs HashedNets at 3% is the one pre-registered comparison: its unadjusted p is the test."
                     if budget == "3%" else ""), "",
                  "| arm | seeds RPG/arm | RPG minus arm [95% CI, pooled] | p | p (Holm) | Welch [95% CI] | reading |",
                  "|---|---|---|---|---|---|---|"]
        for t in table:
            c, w = t["c"], t["w"]
            reading = equivalence_reading(c["estimate"], c["ci"], EQUIVALENCE_TOP1, t["mde"], "RPG higher",
                                          f"{t['other']} higher")
            lines.append(f"| {t['other']} | {t['n']} | {c['estimate']:+.4f} [{c['estimate'] - c['ci']:+.4f}, "
                         f"{c['estimate'] + c['ci']:+.4f}] | {c['p']:.3f} | {t['p_holm']:.3f} | {w['diff']:+.4f} "
                         f"[{w['diff'] - w['ci']:+.4f}, {w['diff'] + w['ci']:+.4f}] | {reading} |")
        lines.append("")
    deep, dense = values.get("resnet56-rpg", []), values.get("dense", [])
    if len(deep) >= 2 and len(dense) >= 2:
        c, w = pooled_contrast({"deep": deep, "dense": dense}, {"deep": 1, "dense": -1}), welch(dense, deep)
        reading = equivalence_reading(c["estimate"], c["ci"], EQUIVALENCE_TOP1, mde(c["sigma"], min(len(deep),
                                      len(dense))), "ResNet-56 RPG higher", "dense ResNet-20 higher")
        lines += ["## deeper RPG against a shallower dense net of the same DoF (issue 22 block 2)", "",
                  f"ResNet-56 RPG (n={len(deep)}) minus dense ResNet-20 (n={len(dense)}), test top-1: "
                  f"{c['estimate']:+.4f} [{c['estimate'] - c['ci']:+.4f}, {c['estimate'] + c['ci']:+.4f}] (pooled), "
                  f"p {c['p']:.3f}; Welch {w['diff']:+.4f} [{w['diff'] - w['ci']:+.4f}, {w['diff'] + w['ci']:+.4f}]: "
                  f"{reading}.", ""]
    return lines


SHARING = {("False", "False"): "no reuse", ("True", "False"): "reuse, shared BN", ("True", "True"): "reuse, new BN"}
FACTORIAL_MARGIN = 0.02  # block 4's equivalence margin (metres depth, unit-vector RMSE normals)


def factorial_levels(row: dict) -> tuple[str, str, str]:
    """(sharing, permutation, reflection) of a multitask_factorial run row."""
    return (SHARING[(row["model.kwargs.reuse"], row["model.kwargs.new_norm"])],
            "on" if row["ring.permute"] == "True" else "off", "on" if row["ring.reflect"] == "True" else "off")


def factorial_effects() -> dict | None:
    """Block 4: per test response, the ANOVA the runner wrote (``seeds/anova.json``) and every factor level's mean
    with its 95% interval from the pooled error mean square; None until the seeds stage has completed."""
    folder = ROOT / "multitask_factorial" / "seeds"
    if not (folder / "anova.json").is_file():
        return None
    import json

    anova = json.loads((folder / "anova.json").read_text())
    rows = [r for r in _rows(folder / "seeds.csv") if r["method"] != "dense"]
    out = {}
    for response in ("depth_rmse", "normal_rmse"):
        table = anova[f"test_{response}"]
        error = table[-1]
        half = lambda n: t_quantile(0.975, error["df"]) * math.sqrt(error["ms"] / n)  # noqa: E731
        levels = {}
        for i, factor in enumerate(("sharing", "permutation", "reflection")):
            groups: dict[str, list[float]] = {}
            for r in rows:
                groups.setdefault(factorial_levels(r)[i], []).append(float(r[f"test_{response}"]))
            levels[factor] = {lv: (statistics.fmean(v), half(len(v)), len(v)) for lv, v in groups.items()}
        out[response] = {"anova": table, "levels": levels, "error": error}
    return out


def factorial_lines(found: dict) -> list[str]:
    """claims.md's block-4 section: main effects (F, p, Holm as the runner computed them) and the on-off differences
    of permutation and reflection and the sharing modes' contrasts, each with its reading."""
    lines = ["## multi-task factorial (issue 22 block 4: sharing x permutation x reflection, equal DoF, 3 seeds per "
             "cell, test areas 5a/5b)", "", f"Figure: [{FIGURES.name}/multitask_factorial.png]"
             f"({FIGURES.name}/multitask_factorial.png). Differences use the pooled error mean square of the "
             f"three-way ANOVA; equivalence margin ±{FACTORIAL_MARGIN:g}; lower RMSE is better.", "",
             "| response | effect | F (df) | p | p (Holm, 6 main effects) | contrast [95% CI] | reading |",
             "|---|---|---|---|---|---|---|"]
    pairs = {"sharing": [("reuse, new BN", "reuse, shared BN"), ("reuse, new BN", "no reuse")],
             "permutation": [("on", "off")], "reflection": [("on", "off")]}
    for response, data in found.items():
        error = data["error"]
        for row in data["anova"][:3]:
            factor = row["effect"]
            for a, b in pairs[factor]:
                (ma, _, na), (mb, _, nb) = data["levels"][factor][a], data["levels"][factor][b]
                se = math.sqrt(error["ms"] * (1 / na + 1 / nb))
                ci = t_quantile(0.975, error["df"]) * se
                mde_value = (t_quantile(0.975, error["df"]) + t_quantile(0.8, error["df"])) * se
                reading = equivalence_reading(ma - mb, ci, FACTORIAL_MARGIN, mde_value, f"{b} better",
                                              f"{a} better")
                if "better" in reading and row.get("p_holm", 0.0) >= 0.05:
                    reading += "; uncorrected: the factor is not significant after Holm"
                lines.append(f"| {response.replace('_', ' ')} | {factor}: {a} minus {b} | {row['f']:.2f} "
                             f"({row['df']}, {error['df']}) | {row['p']:.3f} | {row.get('p_holm', math.nan):.3f} | "
                             f"{ma - mb:+.4f} [{ma - mb - ci:+.4f}, {ma - mb + ci:+.4f}] | {reading} |")
    return lines + [""]


def factorial_figure(found: dict, path: Path) -> None:
    """Every factor level's mean test RMSE with its 95% interval (pooled error MS), one panel per factor and
    response."""
    plt = pyplot()
    fig, axes = plt.subplots(2, 3, figsize=(10, 5.5), sharey="row")
    for r, (response, data) in enumerate(found.items()):
        for c, (factor, levels) in enumerate(data["levels"].items()):
            ax = axes[r][c]
            names = list(levels)
            for i, name in enumerate(names):
                mean, half, n = levels[name]
                ax.errorbar(i, mean, yerr=half, fmt="o", color=f"C{c}", capsize=4)
            ax.set_xticks(range(len(names)), [f"{n}\n(n={levels[n][2]})" for n in names], fontsize=7)
            ax.set_xlim(-0.6, len(names) - 0.4)
            ax.set_title(factor, fontsize=8)
            if c == 0:
                ax.set_ylabel(f"test {response.replace('_', ' ')}" + (" (m)" if response == "depth_rmse" else ""))
    _title(fig, "Paper: best with sub-network reuse, new BN per reuse and permutation/reflection",
           "multi-task factorial at equal DoF: level means over the other factors, 95% CI from the ANOVA error "
           "(lower is better)")
    save_figure(fig, path)


FIGURES = ROOT / "claims"
# claims.md section title (its start) -> (figure file, the claim as the review of the paper states it, metric label)
CLAIM_OF = (
    ("equal DoF", "equal_dof_1epoch.png", "RPG outperforms conventional architectures with the same number of "
     "parameters", "test top-1"),
    ("ring ablation", "ring_ablation_1epoch.png", "destructive weight sharing and even sampling", "test top-1"),
    ("pose", "pose.png", "RPG outperforms CPM, which shares all parameters across sub-networks", "test PCKh@0.5"),
    ("destructive sharing", "destructive.png", "destructive weight sharing (permutation, reflection) and even sampling",
     "test top-1"),
    ("global vs local rings", "rings_decomposed.png", "one global ring (RPG's design) against local rings",
     "test top-1"),
    ("each global ring size", "dof_law_vs_dense.png", "context: each ring size against the dense model",
     "test top-1"),
)


def _claim(title: str) -> tuple[str, str, str]:
    """(figure file, claim, metric label) of a claims.md section title."""
    for start, name, claim, metric in CLAIM_OF:
        if title.startswith(start):
            return name, claim, metric
    raise KeyError(f"no figure declared for the section {title!r}: add it to claims.CLAIM_OF")


def figure_name(title: str) -> str:
    """The file name (under ``FIGURES``) of a comparison family's figure."""
    return _claim(title)[0]


def _title(fig, claim: str, detail: str) -> None:
    """The paper's claim and what the figure shows, wrapped and centred over the whole figure."""
    fig.suptitle("\n".join([*textwrap.wrap(claim, 90), *textwrap.wrap(detail, 100)]), fontsize=9)


def forest_figure(title: str, rows: list[dict], path: Path) -> None:
    """One comparison family at a glance: each difference (second minus first) with its 95% Welch interval, the
    zero line, and the family's MDE as a shaded band; filled markers where the Holm-adjusted p is below 0.05."""
    plt = pyplot()
    _, claim, metric = _claim(title)
    fig, ax = plt.subplots(figsize=(8.5, 1.6 + 0.42 * len(rows)))
    ys = list(range(len(rows)))[::-1]
    mde_max = max(r["mde"] for r in rows)
    ax.axvspan(-mde_max, mde_max, color="0.92", label=f"|diff| < MDE ({mde_max:.3f}, 80% power)")
    ax.axvline(0, color="0.4", lw=0.8)
    for y, r in zip(ys, rows):
        strong = r["p_holm"] < 0.05
        ax.errorbar(r["diff"], y, xerr=r["ci"], fmt="o", color="C0", mfc="C0" if strong else "white", capsize=3)
    ax.set_yticks(ys, [f"{r['b']} − {r['a']} (n={r['n']})" for r in rows], fontsize=8)
    ax.set_xlabel(f"difference in {metric} (fraction; 95% Welch CI)")
    _title(fig, f"Paper: {claim}", title)
    ax.set_ylim(-1.6, len(rows) - 0.5)  # an empty row at the bottom holds the legend
    ax.legend(loc="lower right", fontsize=7, ncol=2, title="filled: Holm p < 0.05", title_fontsize=7)
    save_figure(fig, path)


def law_figure(path: Path) -> bool:
    """The power-law claim: test top-1 against DoF (log axis), mean and 95% CI per ring size, the least-squares
    line over the runs, and the dense model as a band; False when ``dof_law.csv`` has too few runs."""
    source = ROOT / "dof_law" / "dof_law.csv"
    rows = _rows(source) if source.is_file() else []
    fit = law_fit(rows) if rows else None
    if fit is None:
        return False
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    rpg = [r for r in rows if r["label"] != "dense" and r.get("test_top1")]
    sizes = sorted({float(r["dof"]) for r in rpg})
    for dof in sizes:
        mean, half = mean_ci([float(r["test_top1"]) for r in rpg if float(r["dof"]) == dof])
        ax.errorbar(dof, mean, yerr=0 if math.isnan(half) else half, fmt="o", color="C0", capsize=3)
    ax.plot([], [], "o", color="C0", label="RPG, global ring (mean, 95% CI)")
    xs = [sizes[0] / 1.3, sizes[-1] * 1.3]
    ax.plot(xs, [fit["intercept"] + fit["slope"] * math.log10(x) for x in xs], "--", color="C0",
            label=f"log-linear fit: {fit['slope']:+.3f} per decade, lack of fit p {fit['p_lack_of_fit']:.3g}")
    dense = [float(r["test_top1"]) for r in rows if r["label"] == "dense" and r.get("test_top1")]
    if dense:
        mean, half = mean_ci(dense)
        ax.axhspan(mean - half, mean + half, color="C1", alpha=0.25, label=f"dense ResNet-20 (n={len(dense)})")
    ax.set_xscale("log")
    ax.set_xlabel("degrees of freedom (trainable parameters, log scale)")
    ax.set_ylabel("test top-1 (fraction)")
    _title(fig, "Paper: accuracy and the number of parameters follow a power law",
           "Fashion-MNIST ResNet-20, global rings, 20k images x 10 epochs")
    ax.legend(fontsize=7, loc="lower right")
    save_figure(fig, path)
    return True


def multitask_figure(tests: list[dict], path: Path) -> None:
    """The multi-task claim: every matched pair's RMSE gain (second minus first setting; above 0 = the first is
    better) per factor and metric, with the sign test's p; one seed per cell, so pairs, not intervals."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8.5, 4.2))
    for y, t in enumerate(tests[::-1]):
        ax.plot(t["gains"], [y] * len(t["gains"]), "o", color="C0", alpha=0.6)
        ax.plot([t["median_gain"]], [y], "|", color="k", ms=14)
    ax.axvline(0, color="0.4", lw=0.8)
    ax.set_yticks(range(len(tests)), [f"{t['test']} (p {t['p']:.2f}, Holm {t['p_holm']:.2f})" for t in tests[::-1]],
                  fontsize=7)
    ax.set_xlabel("RMSE of the second setting minus the first\n"
                  "(depth in m, normals unitless; > 0: the first is better)")
    _title(fig, "Paper: best with sub-network reuse, new BN per reuse and permutation/reflection",
           "multi-task regression, one seed per cell: matched pairs (dots), medians (bars)")
    save_figure(fig, path)


def figures() -> list[Path]:
    """Every claim's figure under ``FIGURES`` (the comparison families, the law, multi-task); nothing without
    matplotlib."""
    if pyplot() is None:
        return []
    written = []
    for title, rows, _ in comparisons():
        written.append(FIGURES / figure_name(title))
        forest_figure(title, rows, written[-1])
    if law_figure(FIGURES / "dof_law.png"):
        written.append(FIGURES / "dof_law.png")
    written.append(FIGURES / "multitask.png")
    multitask_figure(multitask(), written[-1])
    found = factorial_effects()
    if found is not None:
        written.append(FIGURES / "multitask_factorial.png")
        factorial_figure(found, written[-1])
    return written


def render() -> list[str]:
    """The lines of docs/results/claims.md."""
    mt = multitask()
    lines = ["# The paper's claims against the results here", "",
             "Generated by `python experiments/claims.py` from the CSVs committed in `docs/results/` (nothing is "
             "re-run). Every comparison: seeds per arm, means, difference (second minus first) with its 95% "
             "Welch interval, Welch's two-sided p, Holm-adjusted p within its experiment, and the minimum "
             "detectable difference (MDE: 80% power, alpha 0.05) from the experiment's pooled seed sigma. The "
             "sections marked 1 epoch or 10 epochs without \"20k images\" are the earlier short runs, with wiring "
             "version 1 and `block=16` (not the paper's element-wise permutation, now the default); issue 13's "
             "experiments (element-wise wiring, 20k images x 10 epochs, lr chosen on a validation split by the "
             "pilot, final models scored on the test set) replace them as they land.", ""]
    for title, rows, sigma in comparisons():
        lines += [f"## {title}", "", f"Pooled seed sigma {sigma:.4f}.", f"Figure: [{FIGURES.name}/{figure_name(title)}]"
                  f"({FIGURES.name}/{figure_name(title)}).", "",
                  "| first | second | seeds | mean first | mean second | diff [95% CI] | p | p (Holm) | reading |",
                  "|---|---|---|---|---|---|---|---|---|"]
        lines += [f"| {r['a']} | {r['b']} | {r['n']} | {r['mean_a']:.4f} | {r['mean_b']:.4f} | {r['diff']:+.4f} "
                  f"[{r['diff'] - r['ci']:+.4f}, {r['diff'] + r['ci']:+.4f}] | {r['p']:.3f} | {r['p_holm']:.3f} | "
                  f"{verdict(r)} |" for r in rows]
        lines.append("")
    lines += law_lines()
    lines += equal_size_lines()
    found = factorial_effects()
    lines += factorial_lines(found) if found is not None else []
    lines += ["## multi-task ablation (one seed per cell: paired sign tests, lower RMSE is better)", "",
              f"Figure: [{FIGURES.name}/multitask.png]({FIGURES.name}/multitask.png).", "",
              "| comparison | first better in | median RMSE gain | sign-test p | p (Holm, 6 tests) |",
              "|---|---|---|---|---|"]
    lines += [f"| {t['test']} | {t['wins']} of {t['pairs']} pairs | {t['median_gain']:+.3f} | {t['p']:.3f} | "
              f"{t['p_holm']:.3f} |" for t in mt]
    return lines


def main() -> int:
    lines = render()
    write_markdown(ROOT / "claims.md", lines)
    print("\n".join(lines))
    for path in figures():
        print(f"wrote {path.relative_to(ROOT.parent.parent)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
