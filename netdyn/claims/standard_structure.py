"""Claim 11: the "standard structure" of Fig. 3(a): LP pruning is accurate from early layers, L-map pruning only from
a late layer (nonlinear early layers, linear late ones; report/claims.md, Claim 11). ``positions`` and
``check_positions`` also serve the CNN row that asks the same of convolutional nets."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from netdyn.claims.common import (
    Claim,
    design_role,
    diverged_note,
    missing,
    ok_runs,
    role_tables,
    run_final_steps,
    run_final_values,
)
from netdyn.claims.paper_scale import deep_nets
from netdyn.claims.stats import INCONCLUSIVE, INTERVAL, MIN_REPLICATES, Outcome, bootstrap, combine, decide
from netdyn.tables import RunTables

PRUNING_TOLERANCE = 0.02  # "accurate": within this of the unpruned test accuracy
LP_EARLY = 0.25  # LP accurate from a start layer in the first quarter of the net
LMAP_LATE = 0.5  # L-map accurate only from a start layer in the second half


def positions(tables: RunTables, run: str) -> tuple[float, float]:
    """(LP position, L-map position) of ``run``: the first start layer within PRUNING_TOLERANCE of the unpruned test
    accuracy, as (l - 1) / D; NaN when the pruning metrics or the accuracy are missing."""
    final = run_final_steps(tables).get(run)
    reference = run_final_values(tables, "test_acc").set_index("run")["value"].get(run, math.nan)
    metrics = tables.metrics
    if final is None or not math.isfinite(reference) or metrics is None or metrics.empty:
        return (math.nan, math.nan)
    rows = metrics[(metrics["run"] == run) & (metrics["step"] == final)]
    found = []
    for metric in ("lp_acc", "lmap_acc"):
        curve = rows[rows["metric"] == metric].assign(layer=lambda f: pd.to_numeric(f["layer"], errors="coerce"))
        curve = curve.dropna(subset=["layer"]).sort_values("layer")
        if curve.empty:
            return (math.nan, math.nan)
        depth = curve["layer"].max() - 1  # start layers 1..L = D + 1
        hits = curve[pd.to_numeric(curve["value"], errors="coerce") >= reference - PRUNING_TOLERANCE]
        found.append((hits["layer"].iloc[0] - 1) / depth if len(hits) and depth > 0 else math.nan)
    return tuple(found)


def check_positions(tables_by_role: Mapping[str, RunTables], role: str) -> Outcome:
    """Every run of ``role`` a replicate: (a) mean LP position <= LP_EARLY, (b) mean L-map position >= LMAP_LATE."""
    tables = role_tables(tables_by_role, role)
    if tables is None:
        return missing(role)
    runs, diverged = ok_runs(tables)
    note = diverged_note(diverged)
    found = np.array([positions(tables, run) for run in runs["run"]]).reshape(-1, 2)
    found = found[~np.isnan(found).any(axis=1)]
    if not len(found):
        return Outcome(INCONCLUSIVE, "", f"no {role} run with lp_acc, lmap_acc and test_acc at its final step" + note)
    groups = {"runs": found}
    a = decide("a", bootstrap(groups, lambda m: m["runs"][0]), "<=", LP_EARLY, "LP position")
    b = decide("b", bootstrap(groups, lambda m: m["runs"][1]), ">=", LMAP_LATE, "L-map position")
    return combine([a, b], note)


def design_positions(runs_by_role: Mapping[str, pd.DataFrame], role: str) -> str | None:
    runs = design_role(runs_by_role, role)
    if runs is None:
        return f"no {role} role"
    return None if len(runs) >= MIN_REPLICATES else f"< {MIN_REPLICATES} {role} runs"


def check(tables_by_role: Mapping[str, RunTables], context: Mapping[str, Any]) -> Outcome:
    return check_positions(tables_by_role, "depth")


def design(runs_by_role: Mapping[str, pd.DataFrame], context: Mapping[str, Any]) -> str | None:
    return design_positions(runs_by_role, "depth")


CLAIMS = (
    Claim(
        11,
        "the standard structure: LP accurate from early layers, L-map only from a late layer (Fig. 3(a))",
        ("depth",),
        "per depth run at its final step, the first start layer l whose lp_acc (lmap_acc) is within "
        f"{PRUNING_TOLERANCE} of the unpruned test_acc, as a position (l - 1) / D in the net; every run a replicate; "
        f"{INTERVAL.replace('seeds', 'runs')}",
        f"(a) mean LP position <= {LP_EARLY}; (b) mean L-map position >= {LMAP_LATE}; each decided by its interval. "
        "Reproduced if (a) and (b) hold",
        check,
        deep_nets,
        design,
    ),
)
