"""The statistics every claim shares (docs/methods.md §21, report/claims.md "Rules shared by all claims"): verdicts,
Spearman's rho, the percentile bootstrap over seeds, and the rules that turn an interval into a part's verdict and
parts into a claim's.

Light: numpy only. ``spearman`` is written in plain Python because the bootstrap calls it thousands of times on a
handful of points, where scipy's per-call overhead is ~80x the work.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE = "reproduced", "not reproduced", "inconclusive"

# Requirements shared by the claims.
MIN_SWEEP_POINTS = 3  # points along a swept axis needed to locate an optimum
MIN_TREND_POINTS = 4  # points needed to read a trend (Spearman rho)
MIN_REPLICATES = 2  # replicates (seeds) per point needed for an interval
MAJORITY = 0.5  # "for at least half of the widths / runs"
MIN_RHO = 0.5  # |Spearman rho| that counts as a monotone trend
BOOTSTRAP_RESAMPLES = 2000
INTERVAL_LEVEL = 0.95
BOOTSTRAP_SEED = 0

INTERVAL = f"{INTERVAL_LEVEL:.0%} bootstrap interval over seeds"
TOO_FEW_SEEDS = f"< {MIN_REPLICATES} seeds per point"
_HUGE = 1e300


class Part(NamedTuple):
    """One part of a claim: its verdict (None for a part reported but not scored), name, text and interval."""

    verdict: str | None
    name: str
    text: str
    estimate: float = math.nan
    low: float = math.nan
    high: float = math.nan
    replicates: int = 0


class Outcome(NamedTuple):
    verdict: str
    value: str
    reason: str
    estimate: float = math.nan
    low: float = math.nan
    high: float = math.nan
    replicates: int = 0
    decided_by: str = ""


class Estimate(NamedTuple):
    """A quantity computed on the replicate means, its bootstrap interval and the fewest replicates of a point."""

    value: float
    low: float
    high: float
    replicates: int


def average_ranks(values: Sequence[float]) -> list[float]:
    """0-based ranks, ties averaged (as scipy's rankdata, minus one)."""
    order = sorted(range(len(values)), key=values.__getitem__)
    ranks = [0.0] * len(values)
    start = 0
    while start < len(order):
        stop = start
        while stop + 1 < len(order) and values[order[stop + 1]] == values[order[start]]:
            stop += 1
        for position in range(start, stop + 1):
            ranks[order[position]] = (start + stop) / 2
        start = stop + 1
    return ranks


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's rho (scipy.stats.spearmanr's statistic; NaN for a constant input)."""
    rx, ry = average_ranks([float(v) for v in x]), average_ranks([float(v) for v in y])
    if len(rx) < 2:
        return math.nan
    mx, my = sum(rx) / len(rx), sum(ry) / len(ry)
    sxx = sum((a - mx) ** 2 for a in rx)
    syy = sum((b - my) ** 2 for b in ry)
    if sxx == 0 or syy == 0:
        return math.nan
    return sum((a - mx) * (b - my) for a, b in zip(rx, ry, strict=True)) / math.sqrt(sxx * syy)


def median_trend(curves: Sequence[Sequence[tuple[float, float]]]) -> float:
    """The median over ``curves`` (each ``[(x, y), ...]``) of Spearman rho(x, y); NaN when no rho is finite."""
    rhos = [spearman([x for x, _ in curve], [y for _, y in curve]) for curve in curves]
    rhos = [rho for rho in rhos if math.isfinite(rho)]
    return float(np.median(rhos)) if rhos else math.nan


def fmt(x: float | None) -> str:
    return "nan" if x is None or not math.isfinite(x) else f"{x:.4g}"


def bootstrap(
    groups: Mapping[Any, np.ndarray],
    statistic: Callable[[dict[Any, Any]], float],
    *,
    resamples: int = BOOTSTRAP_RESAMPLES,
    level: float = INTERVAL_LEVEL,
    seed: int = BOOTSTRAP_SEED,
) -> Estimate:
    """``statistic`` of the replicate means of every group, and its percentile bootstrap interval.

    ``groups`` maps a point to its replicates (1-D values, or 2-D rows resampled together); each resample draws every
    point's replicates with replacement. Resamples where the statistic is NaN are left out. With fewer than
    ``MIN_REPLICATES`` replicates at some point the interval is NaN (no spread to estimate).
    """
    groups = {key: np.asarray(values, dtype=float) for key, values in groups.items() if len(values)}
    if not groups:
        return Estimate(math.nan, math.nan, math.nan, 0)
    replicates = min(len(values) for values in groups.values())
    value = float(statistic({key: values.mean(axis=0) for key, values in groups.items()}))
    if replicates < MIN_REPLICATES:
        return Estimate(value, math.nan, math.nan, replicates)
    rng = np.random.default_rng(seed)
    draws = {key: rng.integers(0, len(values), (resamples, len(values))) for key, values in groups.items()}
    samples = np.array(
        [statistic({key: groups[key][draws[key][b]].mean(axis=0) for key in groups}) for b in range(resamples)],
        dtype=float,
    )
    samples = samples[~np.isnan(samples)]
    if samples.size == 0:
        return Estimate(value, math.nan, math.nan, replicates)
    tail = 100 * (1 - level) / 2
    # Bounded basins make some statistics infinite; percentiles interpolate, so compute them on large finite stand-ins.
    low, high = np.percentile(np.clip(samples, -_HUGE, _HUGE), [tail, 100 - tail])
    return Estimate(value, _unclip(low), _unclip(high), replicates)


def _unclip(x: float) -> float:
    return math.copysign(math.inf, x) if abs(x) >= _HUGE else float(x)


def _interval_text(estimate: Estimate) -> str:
    if math.isnan(estimate.low):
        return f"{fmt(estimate.value)} (n={estimate.replicates}, no interval)"
    return f"{fmt(estimate.value)} [{fmt(estimate.low)}, {fmt(estimate.high)}] (n={estimate.replicates})"


def decide(
    name: str, estimate: Estimate, op: str, threshold: float, text: str = "", *, low: Estimate | None = None
) -> Part:
    """A part decided by its interval: ``op`` in ">=", ">", "<=", "<" against ``threshold``.

    Reproduced when the whole interval meets the criterion, not reproduced when the whole interval fails it, else
    inconclusive (also without an interval). ``low`` (optional) is a pessimistic estimate for bounded data: its
    interval decides "reproduced" while ``estimate`` (the optimistic one) decides "not reproduced".
    """
    optimistic, pessimistic = estimate, low or estimate
    label = f"{text}{' ' if text else ''}{_interval_text(optimistic)}"
    if low is not None and (pessimistic.value != optimistic.value or pessimistic.low != optimistic.low):
        label += f", bounded: pessimistic {_interval_text(pessimistic)}"
    if math.isnan(optimistic.value):
        return Part(INCONCLUSIVE, name, f"{text or 'quantity'} not measured", replicates=optimistic.replicates)
    if math.isnan(optimistic.low) or math.isnan(pessimistic.low):
        why = f"{label}: < {MIN_REPLICATES} seeds per point, no interval"
        return Part(INCONCLUSIVE, name, why, optimistic.value, math.nan, math.nan, optimistic.replicates)
    ok = {">=": np.greater_equal, ">": np.greater, "<=": np.less_equal, "<": np.less}[op]
    # For ">=" / ">" the pessimistic interval's low end must pass; for "<=" / "<" its high end.
    holds = ok(pessimistic.low if op in (">=", ">") else pessimistic.high, threshold)
    fails = not ok(optimistic.high if op in (">=", ">") else optimistic.low, threshold)
    verdict = REPRODUCED if holds else NOT_REPRODUCED if fails else INCONCLUSIVE
    text = f"{label} {op} {fmt(threshold)}?"
    return Part(verdict, name, text, optimistic.value, optimistic.low, optimistic.high, optimistic.replicates)


def bounded_decide(name: str, groups: dict, statistic: Callable, op: str, threshold: float, text: str) -> Part:
    """Decide a part on bounded data: ``groups`` hold (low, high) rows; ``statistic(means, side)`` with side
    "pessimistic" / "optimistic" picks the end of each bound that makes the criterion hardest / easiest to meet."""
    sides = {side: bootstrap(groups, lambda m, side=side: statistic(m, side)) for side in ("pessimistic", "optimistic")}
    if math.isnan(sides["optimistic"].value):
        return untestable(name, f"{text}: no basin value")
    return decide(name, sides["optimistic"], op, threshold, text, low=sides["pessimistic"])


def untestable(name: str, why: str) -> Part:
    return Part(INCONCLUSIVE, name, why)


def combine(parts: Sequence[Part], note: str = "") -> Outcome:
    """Parts -> the claim's outcome: verdict, value, reason and the deciding part's interval."""
    scored = [part for part in parts if part.verdict is not None]
    verdicts = [part.verdict for part in scored]
    verdict = NOT_REPRODUCED if NOT_REPRODUCED in verdicts else INCONCLUSIVE if INCONCLUSIVE in verdicts else REPRODUCED
    deciding = next((part for part in scored if part.verdict == verdict), scored[0] if scored else None)
    reason = "; ".join(f"({part.name}) {part.verdict or 'reported, not scored'}: {part.text}" for part in parts) + note
    value = "; ".join(f"({part.name}) {part.text}" for part in parts)
    if deciding is None:
        return Outcome(verdict, value, reason)
    return Outcome(
        verdict, value, reason, deciding.estimate, deciding.low, deciding.high, deciding.replicates, deciding.name
    )
