"""Paired differences over seeds with Student's t confidence intervals, and how to say them.

Every variant of a study is compared with the first one of the experiment file
(the baseline) seed by seed: runs with the same seed share the initial draw and
the batch order, so the difference d_s = variant_s - baseline_s removes what the
seed does to both. Over the n seeds both finished without diverging:

    mean  = (1/n) sum d_s
    sd    = sqrt(sum (d_s - mean)^2 / (n - 1))
    CI    = mean -+ t_{(1 + c)/2, n - 1} * sd / sqrt(n)      (c = 0.95)

with the Student's t quantile of n - 1 degrees of freedom (``t_quantile``, no
scipy needed). A difference is *resolved* when its CI excludes 0.
"""
from __future__ import annotations

import dataclasses
import math
import statistics


def _incomplete_beta_fraction(a: float, b: float, x: float) -> float:
    """Continued fraction of the regularized incomplete beta (modified Lentz; Numerical Recipes 6.4)."""
    tiny, eps = 1e-300, 1e-16
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1)
    d = 1 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 1000):
        for numerator in (m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
                          -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))):
            d = 1 + numerator * d
            d = 1 / (d if abs(d) > tiny else tiny)
            c = 1 + numerator / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1) < eps:
            break
    return h


def incomplete_beta(a: float, b: float, x: float) -> float:
    """The regularized incomplete beta function I_x(a, b), 0 <= x <= 1, a, b > 0."""
    if x <= 0 or x >= 1:
        return 0.0 if x <= 0 else 1.0
    log_front = (math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)
                 + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1) / (a + b + 2):  # the fraction converges fast on this side; use the symmetry otherwise
        return math.exp(log_front) * _incomplete_beta_fraction(a, b, x) / a
    return 1 - math.exp(log_front) * _incomplete_beta_fraction(b, a, 1 - x) / b


def t_cdf(t: float, df: float) -> float:
    """P(T <= t) for Student's t with ``df`` degrees of freedom: 1 - I_{df/(df+t^2)}(df/2, 1/2) / 2 for t > 0."""
    tail = incomplete_beta(df / 2, 0.5, df / (df + t * t)) / 2
    return 1 - tail if t > 0 else tail


def t_quantile(p: float, df: float) -> float:
    """The t with t_cdf(t, df) = p (0 < p < 1), by bisection to machine precision."""
    if not 0 < p < 1 or not df > 0:
        raise ValueError(f"t_quantile: need 0 < p < 1 and df > 0, got p={p}, df={df}")
    if p < 0.5:
        return -t_quantile(1 - p, df)
    low, high = 0.0, 1.0
    while t_cdf(high, df) < p:
        low, high = high, 2 * high
    for _ in range(200):
        mid = (low + high) / 2
        if mid in (low, high):
            break
        low, high = (mid, high) if t_cdf(mid, df) < p else (low, mid)
    return (low + high) / 2


@dataclasses.dataclass(frozen=True)
class PairedDifference:
    """variant - baseline of one metric over the seeds both have; CI bounds nan for n < 2."""

    variant: str
    baseline: str
    metric: str
    seeds: tuple[int, ...]
    mean: float
    low: float
    high: float
    confidence: float = 0.95

    @property
    def n(self) -> int:
        return len(self.seeds)

    @property
    def resolved(self) -> bool:
        """The CI excludes 0 (False when there is no CI)."""
        return self.low > 0 or self.high < 0


def paired_difference(variant: dict[int, float], baseline: dict[int, float], names=("", ""), metric="",
                      confidence: float = 0.95) -> PairedDifference:
    """Mean and CI of variant[s] - baseline[s] over the seeds s in both (module docstring)."""
    seeds = tuple(sorted(set(variant) & set(baseline)))
    diffs = [variant[s] - baseline[s] for s in seeds]
    mean = statistics.fmean(diffs) if diffs else math.nan
    if len(diffs) < 2:
        low = high = math.nan
    else:
        half = t_quantile((1 + confidence) / 2, len(diffs) - 1) * statistics.stdev(diffs) / math.sqrt(len(diffs))
        low, high = mean - half, mean + half
    return PairedDifference(names[0], names[1], metric, seeds, mean, low, high, confidence)


def _usable(row: dict, metric: str) -> bool:
    diverged = row.get("diverged")
    return not (diverged is True or str(diverged).lower() == "true") and row.get(metric) not in (None, "")


def paired_differences(rows: list[dict], variants: list[str], metric: str = "test_accuracy",
                       confidence: float = 0.95) -> list[PairedDifference]:
    """Each of ``variants[1:]`` against ``variants[0]`` on column ``metric`` of result rows
    (results.csv's: config, seed, the metric, diverged); diverged runs are left out."""
    def by_seed(name):
        return {int(r["seed"]): float(r[metric]) for r in rows if r["config"] == name and _usable(r, metric)}

    baseline = by_seed(variants[0])
    return [paired_difference(by_seed(v), baseline, (v, variants[0]), metric, confidence) for v in variants[1:]]


def points(value: float) -> str:
    """An accuracy difference (fraction) in signed percentage points: +0.12."""
    return f"{100 * value:+.2f}"


def interval(d: PairedDifference) -> str:
    """ "+0.12 [+0.03, +0.21]" in percentage points; "+0.12 (n = 1, no CI)" without a CI."""
    if math.isnan(d.low):
        return f"{points(d.mean)} (n = {d.n}, no CI)" if d.n else "– (no common seeds)"
    return f"{points(d.mean)} [{points(d.low)}, {points(d.high)}]"


def resolution_sentence(diffs: list[PairedDifference], what: str) -> str:
    """One sentence saying which differences ``what`` (e.g. "test accuracy") are resolved and which not."""
    if not diffs:
        return f"{what}: nothing to compare."
    base, confidence = diffs[0].baseline, int(round(100 * diffs[0].confidence))
    better = [d for d in diffs if d.resolved and d.mean > 0]
    worse = [d for d in diffs if d.resolved and d.mean < 0]
    unresolved = [d for d in diffs if not d.resolved]
    parts = []
    if better:
        parts.append("better than " + base + ": " + ", ".join(f"{d.variant} {interval(d)}" for d in better))
    if worse:
        parts.append("worse than " + base + ": " + ", ".join(f"{d.variant} {interval(d)}" for d in worse))
    if unresolved:
        parts.append("not resolved (the CI includes 0, or fewer than 2 seeds): "
                     + ", ".join(f"{d.variant} {interval(d)}" for d in unresolved))
    return (f"{what}, paired differences to {base} in percentage points with {confidence}% CIs: "
            + "; ".join(parts) + ".")
