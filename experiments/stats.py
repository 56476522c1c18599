"""Statistics for the results tables: mean with a 95% t-interval, Welch's t-test, Holm adjustment, and the
minimum detectable difference (MDE) of a two-arm comparison. Plain Python (no scipy): the t distribution's CDF
comes from the regularised incomplete beta function (continued fraction, Numerical Recipes' betacf)."""
from __future__ import annotations

import math
import statistics


def _betacf(a: float, b: float, x: float) -> float:
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > 1e-300 else 1e-300)
    h = d
    for m in range(1, 300):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > 1e-300 else 1e-300)
        c = 1.0 + aa / c if abs(1.0 + aa / c) > 1e-300 else 1e-300
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > 1e-300 else 1e-300)
        c = 1.0 + aa / c if abs(1.0 + aa / c) > 1e-300 else 1e-300
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < 1e-14:
            break
    return h


def betainc(a: float, b: float, x: float) -> float:
    """Regularised incomplete beta I_x(a, b)."""
    if x <= 0:
        return 0.0
    if x >= 1:
        return 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1) / (a + b + 2):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1 - x) / b


def t_sf2(t: float, df: float) -> float:
    """Two-sided p-value P(|T| > |t|) of Student's t with ``df`` degrees of freedom."""
    return betainc(df / 2, 0.5, df / (df + t * t))


def t_quantile(p: float, df: float) -> float:
    """The ``p`` quantile (p > 0.5) of Student's t, by bisection on ``t_sf2``."""
    lo, hi = 0.0, 1000.0
    for _ in range(200):
        mid = (lo + hi) / 2
        if 1 - t_sf2(mid, df) / 2 < p:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def mean_ci(values: list[float]) -> tuple[float, float]:
    """(mean, half-width of the 95% t-interval); half-width NaN for fewer than 2 values."""
    n = len(values)
    mean = statistics.fmean(values)
    if n < 2:
        return mean, math.nan
    return mean, t_quantile(0.975, n - 1) * statistics.stdev(values) / math.sqrt(n)


def welch(a: list[float], b: list[float]) -> dict:
    """Difference mean(b) - mean(a) with its 95% CI and Welch's two-sided p-value."""
    va, vb = statistics.variance(a) / len(a), statistics.variance(b) / len(b)
    diff = statistics.fmean(b) - statistics.fmean(a)
    se = math.sqrt(va + vb)
    if se == 0:
        return {"diff": diff, "ci": 0.0, "p": 0.0 if diff else 1.0, "df": math.inf}
    df = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
    return {"diff": diff, "ci": t_quantile(0.975, df) * se, "p": t_sf2(diff / se, df), "df": df}


def holm(pvalues: list[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values, in the input order."""
    order = sorted(range(len(pvalues)), key=lambda i: pvalues[i])
    adjusted, running = [0.0] * len(pvalues), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(pvalues) - rank) * pvalues[i]))
        adjusted[i] = running
    return adjusted


def mde(sigma: float, n: int, power: float = 0.8) -> float:
    """Smallest true difference a two-arm t-test with ``n`` seeds per arm detects at alpha 0.05 with ``power``."""
    df = 2 * n - 2
    return (t_quantile(0.975, df) + t_quantile(power, df)) * sigma * math.sqrt(2 / n)


def f_sf(f: float, d1: float, d2: float) -> float:
    """Upper tail P(F > f) of the F distribution with (``d1``, ``d2``) degrees of freedom."""
    if f <= 0:
        return 1.0
    return betainc(d2 / 2, d1 / 2, d2 / (d2 + d1 * f))


def line_fit(xs: list[float], ys: list[float]) -> dict:
    """Least-squares line y = slope * x + intercept over every point, with the slope's 95% t-interval (n - 2 df),
    R², and, when some x are repeated (seeds), the lack-of-fit F-test: do the means at each x depart from the line
    by more than the spread between repeats (pure error) allows?"""
    n, levels = len(xs), sorted(set(xs))
    if n < 3 or len(levels) < 2:
        raise ValueError("a line with an interval needs at least three points at two or more x values")
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx
    intercept = my - slope * mx
    ss_res = sum((y - slope * x - intercept) ** 2 for x, y in zip(xs, ys))
    ss_tot = sum((y - my) ** 2 for y in ys)
    se = math.sqrt(ss_res / (n - 2) / sxx)
    out = {"slope": slope, "intercept": intercept, "slope_ci": t_quantile(0.975, n - 2) * se,
           "p_slope": t_sf2(slope / se, n - 2) if se else 0.0, "r2": 1 - ss_res / ss_tot if ss_tot else 1.0,
           "points": n}
    groups = [[y for x, y in zip(xs, ys) if x == level] for level in levels]
    ss_pure = sum(sum((y - statistics.fmean(g)) ** 2 for y in g) for g in groups)
    df_lof, df_pure = len(levels) - 2, n - len(levels)
    if df_lof > 0 and df_pure > 0 and ss_pure > 0:
        f = ((ss_res - ss_pure) / df_lof) / (ss_pure / df_pure)
        out.update(lack_of_fit_f=f, lack_of_fit_df=(df_lof, df_pure), p_lack_of_fit=f_sf(f, df_lof, df_pure))
    return out


def pooled_contrast(groups: dict[str, list[float]], weights: dict[str, float]) -> dict:
    """A linear contrast sum_i w_i * mean_i of several arms, tested against the standard deviation pooled over
    *every* arm in ``groups`` (the primary test of issue 22; Welch is the check): estimate, 95% CI, two-sided p,
    and the pooled sigma with its degrees of freedom. E.g. weights {"dense": 1, "ring": -1} is the gap between two
    arms; {"a30": 1, "b30": -1, "a10": -1, "b10": 1} is how much that gap changes from one schedule to another."""
    df = sum(len(g) - 1 for g in groups.values())
    if df < 1:
        raise ValueError("a pooled contrast needs at least one arm with two or more values")
    sigma = math.sqrt(sum((len(g) - 1) * statistics.variance(g) for g in groups.values() if len(g) > 1) / df)
    estimate = sum(w * statistics.fmean(groups[k]) for k, w in weights.items())
    se = sigma * math.sqrt(sum(w * w / len(groups[k]) for k, w in weights.items()))
    p = t_sf2(estimate / se, df) if se else (0.0 if estimate else 1.0)
    return {"estimate": estimate, "ci": t_quantile(0.975, df) * se, "p": p, "sigma": sigma, "df": df}


def saturating_fit(xs: list[float], ys: list[float], *, grid: int = 400) -> dict:
    """Least squares of y = a + b * x^(-c) (the law with an irreducible floor ``a``) against the pure power law
    y = b * x^(-c) (``a`` = 0, nested), both in y's own units: for each c on a grid over (0, 2] the best (a, b), resp.
    b, are linear least squares; the c of lowest residual wins. Returns both fits and the extra-sum-of-squares F test
    of the floor (1 and n - 3 degrees of freedom): does a floor explain the points better than the power law?"""
    n = len(xs)
    if n < 4:
        raise ValueError("the saturating law needs at least four points")
    best_power, best_floor = None, None
    for k in range(1, grid + 1):
        c = 2 * k / grid
        z = [x ** -c for x in xs]
        b0 = sum(zi * yi for zi, yi in zip(z, ys)) / sum(zi * zi for zi in z)
        rss0 = sum((yi - b0 * zi) ** 2 for zi, yi in zip(z, ys))
        if best_power is None or rss0 < best_power["rss"]:
            best_power = {"b": b0, "c": c, "rss": rss0}
        mz, my = statistics.fmean(z), statistics.fmean(ys)
        szz = sum((zi - mz) ** 2 for zi in z)
        if szz == 0:
            continue
        b = sum((zi - mz) * (yi - my) for zi, yi in zip(z, ys)) / szz
        a = my - b * mz
        rss = sum((yi - a - b * zi) ** 2 for zi, yi in zip(z, ys))
        if best_floor is None or rss < best_floor["rss"]:
            best_floor = {"a": a, "b": b, "c": c, "rss": rss}
    f = (best_power["rss"] - best_floor["rss"]) / (best_floor["rss"] / (n - 3)) if best_floor["rss"] > 0 else math.inf
    return {"power": best_power, "floor": best_floor, "floor_f": f, "p_floor": f_sf(f, 1, n - 3)}


def factorial_anova(observations: list[tuple[tuple, float]], factors: tuple[str, ...]) -> list[dict]:
    """Fixed-effects ANOVA of a balanced full factorial with replication: every main effect and every interaction.

    ``observations``: (levels, y) pairs, ``levels`` one value per name in ``factors``; every cell (combination of
    levels) must hold the same number r >= 2 of observations. For a balanced design each effect's sum of squares is
    the sum over observations of its term, the inclusion-exclusion of marginal means (e.g. A x B: m_AB - m_A - m_B +
    m); the error is the within-cell variation. Returns one row per effect (main effects first, then the two-way,
    three-way ... interactions): effect name ("A", "A x B"), df, SS, MS, F, p, and partial eta squared
    SS / (SS + SS_error); then the error row."""
    from itertools import combinations

    k = len(factors)
    levels = [sorted({obs[0][i] for obs in observations}, key=str) for i in range(k)]
    cells: dict[tuple, list[float]] = {}
    for key, y in observations:
        cells.setdefault(tuple(key), []).append(y)
    sizes = {len(v) for v in cells.values()}
    if len(cells) != math.prod(len(lv) for lv in levels) or len(sizes) != 1 or min(sizes) < 2:
        raise ValueError("factorial_anova needs every combination of levels with the same number (>= 2) of "
                         f"observations; got {len(cells)} cells with sizes {sorted(sizes)}")

    def marginal(subset: tuple[int, ...]) -> dict[tuple, float]:
        groups: dict[tuple, list[float]] = {}
        for key, y in observations:
            groups.setdefault(tuple(key[i] for i in subset), []).append(y)
        return {g: statistics.fmean(v) for g, v in groups.items()}

    subsets = [s for size in range(k + 1) for s in combinations(range(k), size)]
    means = {s: marginal(s) for s in subsets}
    error_ss = sum((y - statistics.fmean(cells[tuple(key)])) ** 2 for key, y in observations)
    error_df = len(observations) - len(cells)
    error_ms = error_ss / error_df
    rows = []
    for s in subsets[1:]:
        def term(key, s=s):
            return sum((-1) ** (len(s) - len(t)) * means[t][tuple(key[i] for i in t)]
                       for size in range(len(s) + 1) for t in combinations(s, size))
        ss = sum(term(key) ** 2 for key, _ in observations)
        df = math.prod(len(levels[i]) - 1 for i in s)
        f = (ss / df) / error_ms if error_ms > 0 else math.inf
        rows.append({"effect": " x ".join(factors[i] for i in s), "df": df, "ss": ss, "ms": ss / df, "f": f,
                     "p": f_sf(f, df, error_df), "partial_eta2": ss / (ss + error_ss) if ss + error_ss else 0.0})
    return rows + [{"effect": "error", "df": error_df, "ss": error_ss, "ms": error_ms}]
