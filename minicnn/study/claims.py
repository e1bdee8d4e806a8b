"""Claims an experiment file makes about its variants, and their verdicts on the results.

A claim (``claims:`` in the experiment file, ``minicnn.config.ClaimKeys``) names a metric (a
results.csv column), a variant, a baseline variant, optionally a grid cell, and the direction it
predicts for variant minus baseline. With ``baseline_metric`` the baseline's value is that other
column (which lets a variant be compared with itself: its canvas_56 against its test_accuracy).
Each claim is tested in its cell (default: every cell) by the paired difference over seeds and its
95% confidence interval [low, high] (minicnn.study.stats), with the verdict rule ``RULE`` (m: the
claim's margin):

- higher:    supported if low > 0,           contradicted if high < 0;
- lower:     supported if high < 0,          contradicted if low > 0;
- not_lower: supported if low > -m,          contradicted if high < -m;
- equal:     supported if -m < low, high < m, contradicted if low > m or high < -m;

otherwise, or with fewer than 2 seeds, not resolved at that number of seeds. Every claimable
metric is a share in [0, 1] (accuracies, consistency, the gap), shown in percentage points.
The experiment folder keeps the claims in ``claims.json`` so its figures can be redrawn from it.
"""
from __future__ import annotations

import dataclasses
import json
import pathlib

from minicnn import probes
from minicnn.results import read_results
from minicnn.config import ClaimKeys
from minicnn.errors import ConfigError, UserError
from minicnn.files import write_text
from minicnn.schema import show
from minicnn.study.stats import PairedDifference, interval, paired_difference

FILE = "claims.json"
RULE = ("Verdict rule, on the paired difference variant minus baseline over the seeds both finished "
        "and its 95% CI [low, high] (Student's t, n - 1 degrees of freedom), m the claim's margin: "
        "*higher* is supported when low > 0 and contradicted when high < 0; *lower* the mirror image; "
        "*not_lower* (no loss of more than m) is supported when low > -m and contradicted when high < -m; "
        "*equal* (within m) is supported when the whole CI lies inside (-m, m) and contradicted when it "
        "lies wholly outside; anything else, or fewer than 2 seeds, is not resolved at that number of seeds.")


@dataclasses.dataclass(frozen=True)
class Tested:
    """One claim in one grid cell ("" without a grid): its paired difference and verdict."""

    number: int               # 1-based, the claim's place in the experiment file
    claim: ClaimKeys
    cell: str
    difference: PairedDifference
    verdict: str              # supported | contradicted | not resolved at n seeds | not measured
    compared: str             # what is subtracted (``compared``)
    predicts: str             # the direction in words (``predicts``)


def claimable(config) -> list[str]:
    """The results.csv columns a claim may name for runs of ``config``: shares in [0, 1]."""
    return (["test_accuracy", "val_accuracy"] + [f"shift_{k}" for k in config.shifts]
            + [c for c in probes.columns_for(config.eval) if c != "probe_seconds"])


def check(file: str, claims: tuple, configs: dict, cells: list[str]) -> None:
    """ConfigError (claims[i].KEY) for a claim naming a variant that is not one of ``configs``
    ({variant name: its Config}), a metric those runs do not write, or a cell not in ``cells``
    (the grid's labels)."""
    for i, claim in enumerate(claims):
        where = f"claims[{i}]"
        for key in ("variant", "baseline"):
            if getattr(claim, key) not in configs:
                raise ConfigError(file, f"{where}.{key}", f"expected one of the configs' names "
                                  f"({', '.join(configs)}), got {show(getattr(claim, key))}")
        against = baseline_metric(claim)
        if claim.variant == claim.baseline and against == claim.metric:
            raise ConfigError(file, f"{where}.baseline", f"expected another variant than {claim.variant}, or "
                              "a baseline_metric other than the metric")
        for key, metric, name in (("metric", claim.metric, claim.variant),
                                  ("baseline_metric", against, claim.baseline)):
            metrics = claimable(configs[name])
            if metric not in metrics:
                key = key if getattr(claim, key) is not None else "metric"
                raise ConfigError(file, f"{where}.{key}", f"expected a results.csv column that runs of {name} "
                                  f"write ({', '.join(metrics)}), got {show(metric)}")
        if claim.cell is not None and claim.cell not in cells:
            raise ConfigError(file, f"{where}.cell", f"expected one of the grid cells' labels "
                              f"({'; '.join(cells) or 'none: the experiment has no grid'}), got {show(claim.cell)}")


def baseline_metric(claim: ClaimKeys) -> str:
    """The column the baseline is read from: ``baseline_metric``, by default the claim's metric."""
    return claim.baseline_metric if claim.baseline_metric is not None else claim.metric


def compared(claim: ClaimKeys) -> str:
    """What is subtracted: "consistency: avg - max", or "global canvas_56 - global test_accuracy"."""
    if claim.baseline_metric is None:
        return f"{claim.metric}: {claim.variant} - {claim.baseline}"
    return f"{claim.variant} {claim.metric} - {claim.baseline} {claim.baseline_metric}"


def verdict(claim: ClaimKeys, d: PairedDifference) -> str:
    """The module docstring's rule for ``claim`` on its paired difference ``d``."""
    if d.n == 0:
        return "not measured"
    if d.n < 2:
        return f"not resolved at {d.n} seed"
    m = claim.margin
    supported, contradicted = {
        "higher": (d.low > 0, d.high < 0),
        "lower": (d.high < 0, d.low > 0),
        "not_lower": (d.low > -m, d.high < -m),
        "equal": (-m < d.low and d.high < m, d.low > m or d.high < -m),
    }[claim.direction]
    return "supported" if supported else "contradicted" if contradicted else f"not resolved at {d.n} seeds"


def tested(rows: list[dict], claims) -> list[Tested]:
    """Every claim in each of its cells, in claim order, on result rows (results.csv's)."""
    labels = list(dict.fromkeys(r["cell"] for r in rows if r.get("cell") not in (None, ""))) or [""]
    out = []
    for number, claim in enumerate(claims, start=1):
        for cell in [claim.cell] if claim.cell is not None else labels:
            here = [r for r in rows if (r.get("cell") or "") == cell]
            d = paired_difference(_by_seed(here, claim.variant, claim.metric),
                                  _by_seed(here, claim.baseline, baseline_metric(claim)),
                                  (claim.variant, claim.baseline), claim.metric)
            out.append(Tested(number, claim, cell, d, verdict(claim, d), compared(claim), predicts(claim)))
    return out


def _by_seed(rows: list[dict], variant: str, metric: str) -> dict[int, float]:
    """{seed: value} of ``variant``'s runs that did not diverge and measured ``metric``."""
    return {int(r["seed"]): float(r[metric]) for r in rows if r["config"] == variant
            and str(r.get("diverged")).lower() != "true" and r.get(metric) not in (None, "")}


def predicts(claim: ClaimKeys) -> str:
    """The direction in words: "higher", "not lower by more than 0.50 points", ..."""
    m = f"{100 * claim.margin:.2f} points"
    return {"higher": "higher", "lower": "lower", "not_lower": f"not lower by more than {m}",
            "equal": f"equal within {m}"}[claim.direction]


def section(rows: list[dict], claims) -> list[str]:
    """report.md's claims section: each claim in each cell, its difference, CI and verdict."""
    if not claims:
        return []
    lines = ["## Claims", "", RULE, "", "| # | claim | metric: variant - baseline | cell | predicts | "
             "difference, points [95% CI] | verdict |", "|---|---|---|---|---|---|---|"]
    for t in tested(rows, claims):
        c = t.claim
        lines.append(f"| {t.number} | {c.text} | {compared(c)} | {t.cell or '–'} | "
                     f"{predicts(c)} | {interval(t.difference) if t.difference.n else 'n/a'} | {t.verdict} |")
    return lines + [""]


def save(folder, claims) -> None:
    """Keep the claims in the experiment folder (``FILE``), for ``load``; none: no file."""
    path = pathlib.Path(folder) / FILE
    if claims:
        write_text(path, json.dumps([dataclasses.asdict(c) for c in claims], indent=1) + "\n")
    else:
        path.unlink(missing_ok=True)


def load(folder) -> tuple[ClaimKeys, ...]:
    """The claims ``save`` kept in an experiment folder; () without the file."""
    path = pathlib.Path(folder) / FILE
    if not path.exists():
        return ()
    try:
        return tuple(ClaimKeys(**item) for item in json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError) as e:
        raise UserError(f"{path}: not the claims file minicnn writes ({show(str(e))})") from None


def draw_folder(folder) -> list[pathlib.Path]:
    """``minicnn plot`` of a folder: the figures of minicnn.plots.plot_folder, and for a study
    folder whose experiment file had claims, claims.png (the forest plot) drawn from its
    results.csv and the claims ``save`` kept there."""
    from minicnn import plots

    folder = pathlib.Path(folder)
    figures = plots.plot_folder(folder)
    found = load(folder) if (folder / "results.csv").exists() else ()
    rows = read_results(folder / "results.csv") if found else []
    if found and rows:
        figures.append(plots.save(plots.claims_figure(tested(rows, found)), folder / "claims.png"))
    return figures
