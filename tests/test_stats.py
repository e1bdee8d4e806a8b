"""Paired differences and Student's t: against textbook tables, a hand-worked interval and scipy."""
from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys

import pytest

from minicnn.study.stats import (incomplete_beta, interval, paired_difference, paired_differences,
                           resolution_sentence, t_cdf, t_quantile)

# two-sided 95% (p = 0.975) and one-sided 95% values from any t table, 3 decimals
TABLE = [(0.975, 1, 12.706), (0.975, 2, 4.303), (0.975, 4, 2.776), (0.975, 9, 2.262), (0.975, 29, 2.045),
         (0.95, 10, 1.812), (0.995, 5, 4.032)]


@pytest.mark.parametrize("p, df, value", TABLE)
def test_t_quantile_matches_the_printed_table(p, df, value):
    assert round(t_quantile(p, df), 3) == value
    assert t_quantile(1 - p, df) == -t_quantile(p, df)


def test_t_quantile_closed_forms():
    # df = 1 is Cauchy: tan(pi (p - 1/2)); df = 2: (2p - 1) / sqrt(2 p (1 - p))
    for p in (0.6, 0.9, 0.975, 0.999):
        assert t_quantile(p, 1) == pytest.approx(math.tan(math.pi * (p - 0.5)), rel=1e-12)
        assert t_quantile(p, 2) == pytest.approx((2 * p - 1) / math.sqrt(2 * p * (1 - p)), rel=1e-12)
    assert t_quantile(0.5, 7) == pytest.approx(0.0, abs=1e-12) and t_cdf(0.0, 7) == 0.5
    # I_x(a, b) = P(Binomial(a + b - 1, x) >= a): I_0.4(2, 3) = 1 - 0.6^4 - 4 * 0.4 * 0.6^3 = 0.5248
    assert incomplete_beta(2, 3, 0.4) == pytest.approx(0.5248, rel=1e-12)
    with pytest.raises(ValueError):
        t_quantile(1.0, 3)


SCIPY_REFERENCE = """
import json, sys
from scipy import special, stats
dfs, ps, ts, betas = json.loads(sys.argv[1])
print(json.dumps({"ppf": [[stats.t.ppf(p, df) for p in ps] for df in dfs],
                  "cdf": [[stats.t.cdf(t, df) for t in ts] for df in dfs],
                  "betainc": [special.betainc(a, b, x) for a, b, x in betas]}))
"""


def test_against_scipy():
    """scipy runs in a child process: importing it here would load its own OpenBLAS into the test
    session, after minicnn.threads took its snapshot of the BLAS libraries to limit."""
    if importlib.util.find_spec("scipy") is None:
        pytest.skip("scipy is not installed")
    dfs, ps, ts = [1, 2, 3, 4, 5, 7, 10, 19, 30, 100, 1000], [0.55, 0.9, 0.95, 0.975, 0.995, 0.9995], [-3.0, -0.5, 0.2, 1.5, 6.0]
    betas = [(0.5, 0.5, 0.3), (2, 0.5, 0.99), (50, 0.5, 0.9), (1.5, 7, 0.05)]
    done = subprocess.run([sys.executable, "-c", SCIPY_REFERENCE, json.dumps([dfs, ps, ts, betas])],
                          capture_output=True, text=True, timeout=120, check=True)
    scipy = json.loads(done.stdout)
    for i, df in enumerate(dfs):
        for p, expected in zip(ps, scipy["ppf"][i]):
            assert t_quantile(p, df) == pytest.approx(expected, rel=1e-10), (p, df)
        for t, expected in zip(ts, scipy["cdf"][i]):
            assert t_cdf(t, df) == pytest.approx(expected, rel=1e-11, abs=1e-15), (t, df)
    for (a, b, x), expected in zip(betas, scipy["betainc"]):
        assert incomplete_beta(a, b, x) == pytest.approx(expected, rel=1e-12)


def test_paired_interval_worked_by_hand():
    """Differences 0.2 0.4 0.1 0.3 0.5 points: mean 0.3, sd sqrt(0.1 / 4) = 0.158114,
    se = sd / sqrt(5) = 0.0707107, t(0.975, 4) = 2.776445, half width 0.196324."""
    base = {0: 0.98, 1: 0.981, 2: 0.979, 3: 0.985, 4: 0.97}
    diff = dict(zip(range(5), (0.002, 0.004, 0.001, 0.003, 0.005)))
    variant = {s: base[s] + diff[s] for s in base}
    variant[9] = 0.5                                  # a seed the baseline lacks is not paired
    d = paired_difference(variant, base, ("avg", "max"), "test_accuracy")
    assert d.seeds == (0, 1, 2, 3, 4) and d.n == 5
    assert d.mean == pytest.approx(0.003, abs=1e-12)
    assert d.low == pytest.approx(0.003 - 0.00196324, abs=2e-8) and d.high == pytest.approx(0.003 + 0.00196324, abs=2e-8)
    assert d.resolved and interval(d) == "+0.30 [+0.10, +0.50]"


def test_paired_differences_from_result_rows_skip_diverged_runs():
    rows = [{"config": c, "seed": str(s), "test_accuracy": str(acc), "diverged": str(div)}
            for c, s, acc, div in [("max", 0, 0.98, False), ("max", 1, 0.97, False), ("max", 2, 0.99, False),
                                   ("avg", 0, 0.99, False), ("avg", 1, 0.975, False), ("avg", 2, 0.10, True),
                                   ("one", 0, 0.90, False)]]
    avg, one = paired_differences(rows, ["max", "avg", "one"])
    assert (avg.variant, avg.baseline, avg.seeds) == ("avg", "max", (0, 1))
    assert avg.mean == pytest.approx(0.0075)
    half = t_quantile(0.975, 1) * math.sqrt(((0.01 - 0.0075) ** 2 + (0.005 - 0.0075) ** 2) / 1) / math.sqrt(2)
    assert (avg.low, avg.high) == pytest.approx((0.0075 - half, 0.0075 + half))
    assert not avg.resolved                           # t(0.975, 1) = 12.7: a wide interval
    assert one.n == 1 and math.isnan(one.low) and not one.resolved and interval(one) == "-8.00 (n = 1, no CI)"


def test_resolution_sentence_names_resolved_and_unresolved():
    base = {s: 0.98 for s in range(5)}
    better = paired_difference({s: 0.985 + 0.001 * (s % 2) for s in range(5)}, base, ("avg", "max"))
    worse = paired_difference({s: 0.97 - 0.001 * (s % 2) for s in range(5)}, base, ("global", "max"))
    unclear = paired_difference({s: 0.98 + 0.002 * (-1) ** s for s in range(5)}, base, ("strided", "max"))
    text = resolution_sentence([better, worse, unclear], "Test accuracy")
    assert text.startswith("Test accuracy, paired differences to max in percentage points with 95% CIs: ")
    assert "better than max: avg +0.54 [" in text and "worse than max: global -1.04 [" in text
    assert "not resolved (the CI includes 0, or fewer than 2 seeds): strided +0.04 [" in text
    assert text.endswith("].")
    assert resolution_sentence([], "x") == "x: nothing to compare."
