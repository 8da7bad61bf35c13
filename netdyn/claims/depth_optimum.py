"""Claims 2 and 3: where Fig. 4's depth x width sweep puts its optimum over depth, and how the quantity moves with
width (Fig. 4(a): the best test accuracy sits at depth 6-8 for every width and grows with width; Fig. 4(b): the first
layer's RPD gradient is smallest near depth 6 and falls with width; report/claims.md, Claims 2 and 3)."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from netdyn.claims.common import Claim, design_role, diverged_note, grid, missing, model_sizes, replicates, role_tables
from netdyn.claims.paper_scale import sweep_nets
from netdyn.claims.stats import (
    INCONCLUSIVE,
    INTERVAL,
    MAJORITY,
    MIN_REPLICATES,
    MIN_RHO,
    MIN_SWEEP_POINTS,
    MIN_TREND_POINTS,
    TOO_FEW_SEEDS,
    Outcome,
    bootstrap,
    combine,
    decide,
    median_trend,
    untestable,
)
from netdyn.tables import RunTables

MIN_WIDTHS = 2  # widths needed to call a depth optimum "independent of width"
BEST_DEPTH_RANGE = (6, 8)  # claim 2
FLATTEST_DEPTH_RANGE = (5, 7)  # claim 3


def bracketed(depths: Sequence[float], window: tuple[int, int]) -> bool:
    depths = np.asarray(depths, dtype=float)
    low, high = window
    bracket = (depths < low).any() and ((depths >= low) & (depths <= high)).any() and (depths > high).any()
    return bool(len(depths) >= MIN_SWEEP_POINTS and bracket)


def optimum_widths(keys: Sequence[tuple], window: tuple[int, int]) -> list[float]:
    """Widths whose depth grid can locate an optimum in ``window``."""
    by_width: dict[float, list[float]] = {}
    for depth, width in keys:
        by_width.setdefault(width, []).append(depth)
    return sorted(width for width, depths in by_width.items() if bracketed(depths, window))


def trend_depths(keys: Sequence[tuple]) -> list[float]:
    """Depths with enough widths to read a trend over width."""
    counts: dict[float, set] = {}
    for depth, width in keys:
        counts.setdefault(depth, set()).add(width)
    return sorted(depth for depth, widths in counts.items() if len(widths) >= MIN_TREND_POINTS)


def optimum_fraction(means: Mapping[tuple, float], pick: Callable, window: tuple[int, int]) -> float:
    widths = optimum_widths(list(means), window)
    if len(widths) < MIN_WIDTHS:
        return math.nan
    hits = []
    for width in widths:
        curve = sorted((depth, value) for (depth, w), value in means.items() if w == width)
        best = curve[int(pick([value for _, value in curve]))][0]
        hits.append(window[0] <= best <= window[1])
    return float(np.mean(hits))


def width_trend(means: Mapping[tuple, float]) -> float:
    return median_trend(
        [sorted((w, value) for (d, w), value in means.items() if d == depth) for depth in trend_depths(list(means))]
    )


def sweep_claim(
    tables_by_role: Mapping[str, RunTables], metric: str, layer: int | None, pick: Callable, window, sign: int
) -> Outcome:
    tables = role_tables(tables_by_role, "sweep")
    if tables is None:
        return missing("sweep")
    points, diverged = grid(tables, metric, layer)
    note = diverged_note(diverged)
    if not points:
        return Outcome(INCONCLUSIVE, "", f"no final {metric}" + (f" of layer {layer}" if layer else "") + note)
    widths = optimum_widths(list(points), window)
    if len(widths) < MIN_WIDTHS:
        a = untestable("a", f"{len(widths)} width(s) with a depth grid around {list(window)} (need {MIN_WIDTHS})")
    else:
        fraction = bootstrap(points, lambda m: optimum_fraction(m, pick, window))
        a = decide("a", fraction, ">=", MAJORITY, f"fraction of widths with the optimum in {list(window)}")
    if not trend_depths(list(points)):
        b = untestable("b", f"no depth with >= {MIN_TREND_POINTS} widths")
    else:
        trend = bootstrap(points, width_trend)
        b = decide("b", trend, ">=" if sign > 0 else "<=", sign * MIN_RHO, "median rho(width)")
    return combine([a, b], note)


def sweep_design(window: tuple[int, int]) -> Callable[[Mapping[str, pd.DataFrame], Mapping[str, Any]], str | None]:
    def design(runs_by_role: Mapping[str, pd.DataFrame], context: Mapping[str, Any]) -> str | None:
        sweep = design_role(runs_by_role, "sweep")
        if sweep is None:
            return "no sweep role"
        keys = list(zip(*model_sizes(sweep), strict=True))
        if len(optimum_widths(keys, window)) < MIN_WIDTHS:
            return f"< {MIN_WIDTHS} widths with a depth grid around {list(window)}"
        if not trend_depths(keys):
            return f"no depth with >= {MIN_TREND_POINTS} widths"
        return TOO_FEW_SEEDS if replicates(sweep, ["model.depth", "model.width"]) < MIN_REPLICATES else None

    return design


def check_best_depth(tables_by_role: Mapping[str, RunTables], context: Mapping[str, Any]) -> Outcome:
    return sweep_claim(tables_by_role, "test_acc", None, np.argmax, BEST_DEPTH_RANGE, +1)


def check_flattest_depth(tables_by_role: Mapping[str, RunTables], context: Mapping[str, Any]) -> Outcome:
    return sweep_claim(tables_by_role, "rpd_gradient", 1, np.argmin, FLATTEST_DEPTH_RANGE, -1)


CLAIMS = (
    Claim(
        2,
        "best depth 6-8, roughly independent of width; accuracy grows with width",
        ("sweep",),
        "(a) the fraction of widths whose argmax over depth of final test_acc lies in the window; (b) the median over "
        f"depths of Spearman rho(width, final test_acc); seeds averaged, {INTERVAL}",
        f"(a) fraction >= {MAJORITY} over the widths whose depth grid has >= {MIN_SWEEP_POINTS} depths including one "
        f"below, one inside and one above {list(BEST_DEPTH_RANGE)} (needs >= {MIN_WIDTHS} such widths); (b) median "
        f"rho >= {MIN_RHO} over depths with >= {MIN_TREND_POINTS} widths. Each part decided by its interval; "
        "reproduced if (a) and (b) hold",
        check_best_depth,
        sweep_nets,
        sweep_design(BEST_DEPTH_RANGE),
    ),
    Claim(
        3,
        "first-layer RPD gradient smallest near depth 6, falls with width",
        ("sweep",),
        "(a) the fraction of widths whose argmin over depth of final rpd_gradient (layer 1) lies in the window; (b) "
        f"the median over depths of Spearman rho(width, rpd_gradient); seeds averaged, {INTERVAL}",
        f"(a) fraction >= {MAJORITY} over the widths whose depth grid has >= {MIN_SWEEP_POINTS} depths including one "
        f"below, one inside and one above {list(FLATTEST_DEPTH_RANGE)} (needs >= {MIN_WIDTHS} such widths); (b) median "
        f"rho <= -{MIN_RHO} over depths with >= {MIN_TREND_POINTS} widths. Each part decided by its interval; "
        "reproduced if (a) and (b) hold; saturation is not scored",
        check_flattest_depth,
        sweep_nets,
        sweep_design(FLATTEST_DEPTH_RANGE),
    ),
)
