"""experiments/stats.py: t quantiles, intervals, Welch's test, Holm, MDE against published table values."""
import math
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments"))
from stats import holm, mde, mean_ci, t_quantile, t_sf2, welch  # noqa: E402


@pytest.mark.parametrize("p, df, expected", [(0.975, 1, 12.7062), (0.975, 3, 3.1824), (0.975, 30, 2.0423),
                                             (0.8, 6, 0.9057), (0.975, 1e6, 1.9600)])
def test_t_quantiles_match_tables(p, df, expected):
    assert t_quantile(p, df) == pytest.approx(expected, abs=1e-4)


def test_p_values_intervals_and_adjustment():
    assert t_sf2(2.0, 10) == pytest.approx(0.07339, abs=1e-5)  # two-sided, df 10
    mean, half = mean_ci([1.0, 2.0, 3.0, 4.0])
    assert mean == 2.5 and half == pytest.approx(3.1824 * math.sqrt(5 / 3) / 2, rel=1e-4)
    w = welch([1.0, 2.0, 3.0, 4.0], [2.0, 3.0, 4.0, 5.5])
    assert w["diff"] == 1.125 and 0.29 < w["p"] < 0.31
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert mde(0.014, 4) < mde(0.014, 2) and mde(0.01, 1000) == pytest.approx(0.01 * 2.8016 * math.sqrt(2 / 1000),
                                                                               rel=1e-3)


def test_claims_table_is_up_to_date_with_the_committed_results():
    import claims

    assert (claims.ROOT / "claims.md").read_text() == "\n".join(claims.render()) + "\n", \
        "run `python experiments/claims.py` to regenerate docs/results/claims.md"
    assert claims.sign_test(6, 6) == pytest.approx(0.03125) and claims.sign_test(3, 6) == 1.0


def test_claims_draw_one_figure_per_claim_that_claims_md_links(tmp_path, monkeypatch):
    import re

    import claims

    monkeypatch.setattr(claims, "FIGURES", tmp_path / "claims")
    written = claims.figures()
    names = sorted(p.name for p in written)
    assert len(names) == len(set(names)) and all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in written)
    linked = re.findall(r"\]\(claims/([^)]+\.png)\)", (claims.ROOT / "claims.md").read_text())
    assert sorted(linked) == names  # every section links its figure, every figure is linked
    with pytest.raises(KeyError, match="CLAIM_OF"):
        claims.figure_name("a section nobody declared")


def test_claims_read_an_issue13_experiment_on_the_test_set_once_its_reference_has_two_seeds(tmp_path, monkeypatch):
    import csv

    import claims

    monkeypatch.setattr(claims, "ROOT", tmp_path)
    assert claims.issue13("destructive", "element-wise_reflect", "f") is None  # not run yet
    (tmp_path / "destructive").mkdir()
    rows = [("element-wise_reflect", 0, 0.90, 0.50), ("element-wise_reflect", 1, 0.91, 0.50),
            ("block-16_reflect", 0, 0.80, 0.60), ("block-16_reflect", 1, 0.81, 0.60), ("no-permute_reflect", 0, 0.7, "")]
    with open(tmp_path / "destructive" / "destructive.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["label", "seed", "test_top1", "val_top1"])
        w.writerows(rows)
    found, sigma = claims.issue13("destructive", "element-wise_reflect", "f")
    # the test column is read (not validation); an arm with one seed (or no test number yet) is left out
    assert [(r["a"], r["b"]) for r in found] == [("element-wise_reflect", "block-16_reflect")]
    assert found[0]["diff"] == pytest.approx(-0.1) and sigma == pytest.approx(0.00707, abs=1e-4)


def test_f_tail_matches_tables_and_the_t_distribution():
    from stats import f_sf

    assert f_sf(4.1028, 2, 10) == pytest.approx(0.05, abs=1e-4)  # F(2, 10) 95% point
    assert f_sf(3.4780, 4, 10) == pytest.approx(0.05, abs=1e-4)  # F(4, 10) 95% point
    assert f_sf(3.0, 1, 10) == pytest.approx(t_sf2(math.sqrt(3.0), 10), rel=1e-12)  # F(1, d) = t(d)²
    assert f_sf(0.0, 3, 7) == 1.0


def test_line_fit_interval_and_lack_of_fit_by_hand():
    from stats import f_sf, line_fit

    # means 0, 2, 2 at x = 0, 1, 2 with repeats +-1: a bent curve the line cannot follow
    xs, ys = [0, 0, 1, 1, 2, 2], [-1.0, 1.0, 1.0, 3.0, 1.0, 3.0]
    fit = line_fit(xs, ys)
    assert fit["slope"] == pytest.approx(1.0) and fit["intercept"] == pytest.approx(1 / 3)
    ss_res = sum((y - x - 1 / 3) ** 2 for x, y in zip(xs, ys))  # 22/3 = pure error 6 (3 df) + lack of fit 4/3 (1 df)
    assert ss_res == pytest.approx(22 / 3)
    assert fit["slope_ci"] == pytest.approx(2.7764 * math.sqrt(ss_res / 4 / 4), rel=1e-4)  # t(0.975, 4), sxx = 4
    assert fit["lack_of_fit_df"] == (1, 3) and fit["lack_of_fit_f"] == pytest.approx((4 / 3) / (6 / 3))
    assert fit["p_lack_of_fit"] == f_sf(fit["lack_of_fit_f"], 1, 3)
    assert "p_lack_of_fit" not in line_fit([0, 0, 1, 1], [0.0, 0.2, 1.0, 1.2])  # two levels: a line fits any means
    with pytest.raises(ValueError, match="two or more x values"):
        line_fit([1, 1, 1], [0.0, 1.0, 2.0])


def test_law_reading_follows_the_plan_and_leaves_dense_out(tmp_path, monkeypatch):
    import claims

    def rows(curve, spread=(-0.002, 0.0, 0.002)):
        out = [{"label": f"ring-{d}", "dof": str(d), "test_top1": str(curve(d) + e), "val_top1": str(curve(d) + e)}
               for d in (1_000, 10_000, 100_000, 1_000_000) for e in spread]
        return out + [{"label": "dense", "dof": "5000000", "test_top1": "0.0", "val_top1": "0.0"}]  # far off: not fit

    line = claims.law_fit(rows(lambda d: 0.5 + 0.05 * math.log10(d)))
    assert line["points"] == 12 and line["slope"] == pytest.approx(0.05) and line["reading"].startswith("log-linear")
    bent = claims.law_fit(rows(lambda d: 0.9 - 0.3 / math.log10(d) ** 2))  # saturating: a line misses the means
    assert bent["p_lack_of_fit"] < 0.05 and bent["reading"] == "not log-linear here (lack of fit)"
    flat = claims.law_fit(rows(lambda d: 0.8, spread=(-0.01, 0.0, 0.01)))
    assert flat["reading"] == "no detectable trend"
    assert claims.law_fit(rows(lambda d: 0.8)[:2]) is None  # one DoF value: no line yet

    monkeypatch.setattr(claims, "ROOT", tmp_path)
    assert claims.law_lines() == []  # not run yet
    (tmp_path / "dof_law").mkdir()
    data = rows(lambda d: 0.5 + 0.05 * math.log10(d))
    import csv

    with open(tmp_path / "dof_law" / "dof_law.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(data[0]))
        w.writeheader()
        w.writerows(data)
    text = "\n".join(claims.law_lines())
    assert "| test | 12 | +0.0500 [" in text and "log-linear here" in text


def test_factorial_anova_equals_least_squares_with_effect_coding():
    """Every effect's sum of squares of a balanced 3 x 2 x 2 design with 3 replicates is the drop in residual sum of
    squares when its effect-coded columns leave a least-squares fit (balanced: types I-III agree)."""
    from itertools import combinations, product

    import numpy as np

    from stats import f_sf, factorial_anova

    rng = np.random.default_rng(4)
    keys = [key for key in product(("none", "shared", "new"), (True, False), (True, False)) for _ in range(3)]
    ys = [0.8 + 0.05 * (k[0] == "new") - 0.05 * k[2] + 0.04 * (k[1] and k[2]) + rng.normal(0, 0.02) for k in keys]
    rows = factorial_anova(list(zip(keys, ys)), ("sharing", "permute", "reflect"))
    levels = [("none", "shared", "new"), (True, False), (True, False)]

    def coded(i, key):  # sum-to-zero coding of factor i: one column per level but the last
        return [1.0 if key[i] == lv else (-1.0 if key[i] == levels[i][-1] else 0.0) for lv in levels[i][:-1]]

    def columns(subset, key):
        out = [1.0]
        for i in subset:
            out = [a * b for a in out for b in coded(i, key)]
        return out

    subsets = [s for size in (1, 2, 3) for s in combinations(range(3), size)]

    def rss(kept):
        x = np.array([[1.0] + [c for s in kept for c in columns(s, key)] for key in keys])
        residual = np.array(ys) - x @ np.linalg.lstsq(x, np.array(ys), rcond=None)[0]
        return float(residual @ residual)

    full = rss(subsets)
    assert rows[-1]["effect"] == "error" and rows[-1]["df"] == 24 and rows[-1]["ss"] == pytest.approx(full)
    for s, row in zip(subsets, rows):
        assert row["effect"] == " x ".join(("sharing", "permute", "reflect")[i] for i in s)
        assert row["ss"] == pytest.approx(rss([t for t in subsets if t != s]) - full, rel=1e-9)
        assert row["p"] == pytest.approx(f_sf(row["f"], row["df"], 24))
    assert [r["df"] for r in rows[:-1]] == [2, 1, 1, 2, 2, 1, 2]
    assert rows[0]["p"] < 0.001 and rows[2]["p"] < 0.001 and rows[5]["p"] < 0.01  # the effects put in are found
    with pytest.raises(ValueError, match="same number"):
        factorial_anova(list(zip(keys, ys))[:-1], ("sharing", "permute", "reflect"))


def test_claims_read_block_2_with_pooled_contrasts_holm_and_the_equivalence_margin(tmp_path, monkeypatch):
    import csv

    import claims
    from stats import pooled_contrast

    monkeypatch.setattr(claims, "ROOT", tmp_path)
    assert claims.equal_size_lines() == []  # nothing landed yet
    means = {"rpg-3%": 0.910, "hashednets-3%": 0.909, "thin-3%": 0.880, "shallow-3%": 0.920, "dense": 0.93}
    offsets = (-0.002, 0.0, 0.002, 0.001, -0.001)
    (tmp_path / "equal_size" / "seeds").mkdir(parents=True)
    with open(tmp_path / "equal_size" / "seeds" / "seeds.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["label", "seed", "test_top1"])
        for arm, mean in means.items():
            for seed, off in enumerate(offsets):
                w.writerow([f"{arm}_lr-0.2", seed, mean + off])
    text = "\n".join(claims.equal_size_lines())
    rows = {line.split(" | ")[0].strip("| "): line for line in text.splitlines() if line.startswith("| ")}
    assert "RPG higher (interval above 0)" in rows["thin-3%"] and "shallow-3% higher" in rows["shallow-3%"]
    assert "within ±0.005" in rows["hashednets-3%"]  # +0.001 with a tight interval: inside the margin
    values = {arm: [means[arm] + o for o in offsets] for arm in ("rpg-3%", "hashednets-3%", "thin-3%", "shallow-3%")}
    c = pooled_contrast(values, {"rpg-3%": 1, "thin-3%": -1})  # sigma pooled over the budget's arms, not dense
    assert f"{c['estimate']:+.4f} [{c['estimate'] - c['ci']:+.4f}" in rows["thin-3%"]
    assert "1% budget" not in text and "deeper RPG" not in text  # no 1% arms, no ResNet-56 yet
    assert claims.equivalence_reading(0.001, 0.01, 0.005, 0.02, "a", "b") == "not resolved (MDE 0.0200)"


def test_claims_read_block_4_level_means_contrasts_and_figure(tmp_path, monkeypatch):
    import csv
    import json
    from itertools import product

    import claims
    from stats import factorial_anova

    monkeypatch.setattr(claims, "ROOT", tmp_path)
    monkeypatch.setattr(claims, "FIGURES", tmp_path / "claims")
    assert claims.factorial_effects() is None
    folder = tmp_path / "multitask_factorial" / "seeds"
    folder.mkdir(parents=True)
    rows, obs = [], {"depth_rmse": [], "normal_rmse": []}
    for (reuse, new), permute, reflect, seed in product([("False", "False"), ("True", "False"), ("True", "True")],
                                                       ("True", "False"), ("True", "False"), (0, 1, 2)):
        depth = 0.8 - 0.1 * (reflect == "True") + 0.01 * seed
        normal = 0.6 + 0.002 * seed
        rows.append({"method": "rpg", "model.kwargs.reuse": reuse, "model.kwargs.new_norm": new,
                     "ring.permute": permute, "ring.reflect": reflect, "test_depth_rmse": depth,
                     "test_normal_rmse": normal})
        key = claims.factorial_levels({k: str(v) for k, v in rows[-1].items()})
        obs["depth_rmse"].append((key, depth))
        obs["normal_rmse"].append((key, normal))
    with open(folder / "seeds.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    tables = {f"test_{r}": factorial_anova(o, ("sharing", "permutation", "reflection")) for r, o in obs.items()}
    for t in tables.values():
        for row in t[:3]:
            row["p_holm"] = row["p"]
    (folder / "anova.json").write_text(json.dumps(tables))
    found = claims.factorial_effects()
    mean, half, n = found["depth_rmse"]["levels"]["reflection"]["on"]
    assert n == 18 and mean == pytest.approx(0.71) and half > 0
    text = "\n".join(claims.factorial_lines(found))
    assert "| depth rmse | reflection: on minus off |" in text and "off better" not in text.split("reflection")[1][:200]
    line = next(ln for ln in text.splitlines() if "depth rmse | reflection" in ln)
    assert "-0.1000 [" in line and "on better (interval below 0)" in line
    normal = next(ln for ln in text.splitlines() if "normal rmse | permutation" in ln)
    assert "within ±0.02" in normal  # no effect, a tight interval: inside the margin
    claims.factorial_figure(found, tmp_path / "figure.png")
    assert (tmp_path / "figure.png").read_bytes()[:4] == b"\x89PNG"
