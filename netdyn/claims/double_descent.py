"""Claim 9: double descent at 32 layers, none at 23, with the layers' RPD gradients turning together (Fig. 9;
report/claims.md, Claim 9). Readings come from events.json and netdyn.events.turning_point_spread."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from netdyn.claims.common import (
    MIN_TURNING_STEPS,
    Claim,
    design_role,
    diverged_note,
    missing,
    model_sizes,
    ok_runs,
    role_tables,
    spec,
)
from netdyn.claims.paper_scale import deep_nets
from netdyn.claims.stats import (
    INCONCLUSIVE,
    INTERVAL,
    MAJORITY,
    MIN_REPLICATES,
    NOT_REPRODUCED,
    TOO_FEW_SEEDS,
    Outcome,
    Part,
    bootstrap,
    combine,
    decide,
    untestable,
)
from netdyn.events import turning_point_spread
from netdyn.tables import RunTables

DD_DEPTH, NO_DD_DEPTH = 32, 23
SPREAD_RATIO = 0.5


def check(tables_by_role: Mapping[str, RunTables], context: Mapping[str, Any]) -> Outcome:
    tables = role_tables(tables_by_role, "depth")
    if tables is None:
        return missing("depth")
    runs, diverged = ok_runs(tables)
    depth = spec(runs, "model.depth")
    note = diverged_note(diverged)
    metrics = tables.metrics
    g = metrics[metrics["metric"] == "rpd_gradient"] if metrics is not None and "metric" in metrics.columns else None
    flags: dict[int, list[float]] = {}
    spreads: dict[int, list[float | None]] = {}
    for d in (DD_DEPTH, NO_DD_DEPTH):
        ids = sorted(runs.loc[depth == d, "run"])
        if not ids:
            return Outcome(INCONCLUSIVE, "", f"no non-diverged {d}-layer depth run" + note)
        found = [((tables.events.get(r) or {}).get("double_descent") or {}).get("double_descent") for r in ids]
        flags[d] = [float(flag) for flag in found if flag is not None]
        spreads[d] = []
        for r in ids:
            rows = g[g["run"] == r] if g is not None else pd.DataFrame(columns=["step", "layer", "value"])
            if rows["step"].nunique() >= MIN_TURNING_STEPS:
                spreads[d].append(turning_point_spread(rows)["spread"])
    parts = []
    for name, d, op in (("a1", DD_DEPTH, ">="), ("a2", NO_DD_DEPTH, "<")):
        if not flags[d]:
            parts.append(untestable(name, f"no double-descent reading at depth {d}"))
        else:
            fraction = bootstrap({"seeds": np.array(flags[d])}, lambda m: m["seeds"])
            parts.append(decide(name, fraction, op, MAJORITY, f"fraction of {d}-layer seeds with double descent"))
    turning = {d: [s for s in spreads[d] if s is not None] for d in spreads}
    if not spreads[DD_DEPTH] or not spreads[NO_DD_DEPTH]:
        parts.append(untestable("b", f"< {MIN_TURNING_STEPS} analysed steps"))
    elif 2 * (len(spreads[DD_DEPTH]) - len(turning[DD_DEPTH])) > len(spreads[DD_DEPTH]):
        why = f"G_m turns in fewer than 2 layers in most {DD_DEPTH}-layer seeds: no synchronous turning points"
        parts.append(Part(NOT_REPRODUCED, "b", why))
    elif not turning[NO_DD_DEPTH]:
        parts.append(untestable("b", f"G_m turns in fewer than 2 layers of the {NO_DD_DEPTH}-layer runs"))
    else:
        groups = {DD_DEPTH: np.array(turning[DD_DEPTH]), NO_DD_DEPTH: np.array(turning[NO_DD_DEPTH])}
        difference = bootstrap(groups, lambda m: m[DD_DEPTH] - SPREAD_RATIO * m[NO_DD_DEPTH])
        parts.append(decide("b", difference, "<=", 0.0, f"spread({DD_DEPTH}) - {SPREAD_RATIO} spread({NO_DD_DEPTH})"))
    return combine(parts, note)


def scale(runs: pd.DataFrame, context: Mapping[str, Any]) -> str:
    return deep_nets(runs, context, also_depth=DD_DEPTH)


def design(runs_by_role: Mapping[str, pd.DataFrame], context: Mapping[str, Any]) -> str | None:
    runs = design_role(runs_by_role, "depth")
    if runs is None:
        return "no depth role"
    depth, _ = model_sizes(runs)
    present = {d: (depth == d).sum() for d in (DD_DEPTH, NO_DD_DEPTH)}
    if not all(present.values()):
        return f"no {DD_DEPTH}- and {NO_DD_DEPTH}-layer runs"
    return TOO_FEW_SEEDS if min(present.values()) < MIN_REPLICATES else None


CLAIMS = (
    Claim(
        9,
        f"double descent at {DD_DEPTH} layers (synchronous G_m turning points), none at {NO_DD_DEPTH}",
        ("depth",),
        "events double_descent flags, and the spread (std of log10 t*_m across the hidden layers whose G_m turns, "
        f"netdyn.events.turning_point_spread) of rpd_gradient for the {DD_DEPTH}- and {NO_DD_DEPTH}-layer runs; "
        f"{INTERVAL}",
        f"(a1) fraction of {DD_DEPTH}-layer seeds with double descent >= {MAJORITY}; (a2) fraction of "
        f"{NO_DD_DEPTH}-layer seeds with it < {MAJORITY}; (b) spread({DD_DEPTH}) - {SPREAD_RATIO} * "
        f"spread({NO_DD_DEPTH}) <= 0, not reproduced when G_m turns in fewer than 2 layers of most {DD_DEPTH}-layer "
        f"seeds (a maximum at the first or last analysed step is no turning point). Reproduced if all hold; "
        f"inconclusive without both depths or with < {MIN_TURNING_STEPS} analysed steps",
        check,
        scale,
        design,
    ),
)
