"""Rank correlations with bootstrap intervals (docs/methods.md §26): how each flatness measure (weight-basin size,
top Hessian eigenvalue, Hessian trace) orders the runs of a sweep against their test accuracy, and against each
other.

``spearman_interval(x, y)`` is Spearman's rho (scipy.stats.spearmanr) with a percentile bootstrap interval over
resampled pairs; resamples whose rho is undefined (a constant side, common with few runs and ties) are dropped and
counted, where scipy.stats.bootstrap would return no interval at all. ``flatness_correlations(scalar, runs)`` is the
report's table. Light: pandas and
scipy only, no torch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

FLATNESS_MEASURES = ("basin_weight", "hessian_max", "hessian_trace")
TARGET = "test_acc"
CORRELATION_COLUMNS = ["measure", "against", "n", "rho", "low", "high", "level", "resamples", "note"]


def spearman_interval(
    x: Sequence[float], y: Sequence[float], *, level: float = 0.95, resamples: int = 2000, seed: int = 0
) -> dict[str, float | int | str]:
    """Spearman's rho of the pairs (x, y) and its percentile bootstrap interval (resampling pairs).

    Fewer than 3 pairs, or a constant side, give NaN with the reason in ``note``; resamples that are constant (rho
    undefined) are dropped from the interval, and the note says how many."""
    from scipy import stats

    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    result = {"n": int(len(x)), "rho": math.nan, "low": math.nan, "high": math.nan, "level": level,
              "resamples": resamples, "note": ""}  # fmt: skip
    if len(x) < 3:
        return result | {"note": f"{len(x)} pair{'' if len(x) == 1 else 's'}: too few for a rank correlation"}
    if np.ptp(x) == 0 or np.ptp(y) == 0:
        return result | {"note": "one side is constant: no rank correlation"}
    result["rho"] = float(stats.spearmanr(x, y).statistic)
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(x), size=(resamples, len(x)))
    rhos = _spearman(x[picks], y[picks])
    defined = rhos[np.isfinite(rhos)]
    if len(defined) < resamples / 2:
        return result | {"note": f"only {len(defined)} of {resamples} resamples define rho: no interval"}
    tail = (1 - level) / 2
    result["low"], result["high"] = (float(q) for q in np.quantile(defined, [tail, 1 - tail]))
    if len(defined) < resamples:
        result["note"] = f"{resamples - len(defined)} constant resamples left out"
    return result


def _spearman(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Spearman's rho along the last axis (one per resample) as the Pearson correlation of average ranks (scipy's
    definition); NaN where a side is constant."""
    from scipy.stats import rankdata

    rx, ry = rankdata(x, axis=-1), rankdata(y, axis=-1)
    rx, ry = rx - rx.mean(axis=-1, keepdims=True), ry - ry.mean(axis=-1, keepdims=True)
    denominator = np.sqrt((rx * rx).sum(axis=-1) * (ry * ry).sum(axis=-1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, (rx * ry).sum(axis=-1) / denominator, np.nan)


def final_metric_table(scalar: pd.DataFrame, runs: Sequence[str], metrics: Sequence[str]) -> pd.DataFrame:
    """One row per run with each network-level metric at the run's final step (NaN where it lacks it)."""
    from netdyn.tables import final_values

    table = pd.DataFrame({"run": list(runs)})
    for metric in metrics:
        values = final_values(scalar, metric).set_index("run")["value"]
        table[metric] = table["run"].map(values)
    return table


def flatness_correlations(
    scalar: pd.DataFrame, runs: Sequence[str], *, level: float = 0.95, resamples: int = 2000, seed: int = 0
) -> pd.DataFrame:
    """Across ``runs`` (their final step): each flatness measure against test accuracy, and the measures against
    each other. Whatever they are, they are reported; runs lacking a value are left out of that pair (``n``)."""
    table = final_metric_table(scalar, runs, [*FLATNESS_MEASURES, TARGET])
    pairs = [(measure, TARGET) for measure in FLATNESS_MEASURES]
    pairs += [(a, b) for i, a in enumerate(FLATNESS_MEASURES) for b in FLATNESS_MEASURES[i + 1 :]]
    options = {"level": level, "resamples": resamples, "seed": seed}
    rows = [{"measure": a, "against": b, **spearman_interval(table[a], table[b], **options)} for a, b in pairs]
    return pd.DataFrame(rows, columns=CORRELATION_COLUMNS)
