"""Beyond the paper: three of its findings about MLPs asked of convolutional nets (issue 25, Fig. S3; report/claims.md,
Claims 13-15). The runs are Fig. S3's ``cnn`` role (``model.arch: cnn`` sweeping ``model.depth`` and ``model.width``;
a conv layer's neurons are its channels, docs/methods.md §27). Every criterion is the MLP claim's, with its constants:
no threshold here is new.

* 13, the standard structure by layer (Fig. 3(b), §IV: "the RPD gradient increases with layer depth, indicating a
  decreasing proportion of NPM neurons"): the final RPD gradient and OPM fraction rise with the analysed layer.
* 14, claim 11's pruning positions: LP accurate from early layers, L-map only from a late layer.
* 15, claim 4's basin trends: the input basin grows and the weight basin shrinks with depth. Saturation is not scored:
  the CNN family stops at 8 conv layers, where claim 4's pivot sits, with no depth beyond it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from netdyn.claims.basins import SPACES, basin_grid, depth_trend_fraction, trend_widths
from netdyn.claims.common import (
    Claim,
    design_role,
    diverged_note,
    missing,
    model_sizes,
    ok_runs,
    replicates,
    role_tables,
    spec,
)
from netdyn.claims.paper_scale import beyond_paper
from netdyn.claims.standard_structure import LMAP_LATE, LP_EARLY, PRUNING_TOLERANCE, check_positions, design_positions
from netdyn.claims.stats import (
    INTERVAL,
    MAJORITY,
    MIN_REPLICATES,
    MIN_RHO,
    MIN_TREND_POINTS,
    TOO_FEW_SEEDS,
    Outcome,
    bootstrap,
    combine,
    decide,
    median_trend,
    untestable,
)
from netdyn.tables import RunTables, final_steps, scalars

ROLE = "cnn"
LAYER_METRICS = (("a", "rpd_gradient", "RPD gradient"), ("b", "opm_fraction", "OPM fraction"))
POINT = ["model.depth", "model.width"]


def layer_profiles(tables: RunTables, runs: pd.DataFrame, metric: str) -> dict[tuple, np.ndarray]:
    """Points ``(depth, width) -> [seed, layer]`` final values of ``metric`` over every analysed layer (runs with a
    value at each layer of their point)."""
    scalar = scalars(tables)
    rows = scalar[(scalar["metric"] == metric) & scalar["layer"].notna()]
    rows = rows[rows["step"] == rows["run"].map(final_steps(scalar))]
    wide = rows.pivot_table(index="run", columns="layer", values="value", aggfunc="first")
    points = pd.DataFrame({"run": runs["run"], "depth": spec(runs, "model.depth"), "width": spec(runs, "model.width")})
    profiles = {}
    for key, group in points.dropna().groupby(["depth", "width"], sort=True):
        found = wide.reindex(group["run"]).dropna(how="all")
        found = found.loc[:, found.notna().any()].dropna()  # the point's layers, seeds that have them all
        if len(found):
            profiles[tuple(float(k) for k in key)] = found.to_numpy(dtype=float)
    return profiles


def layer_trend(means: Mapping[tuple, np.ndarray]) -> float:
    """The median over points with >= MIN_TREND_POINTS layers of Spearman rho(layer, seed-averaged value)."""
    return median_trend([list(enumerate(curve)) for curve in means.values() if len(curve) >= MIN_TREND_POINTS])


def check_layer_structure(tables_by_role: Mapping[str, RunTables], context: Mapping[str, Any]) -> Outcome:
    tables = role_tables(tables_by_role, ROLE)
    if tables is None:
        return missing(ROLE)
    runs, diverged = ok_runs(tables)
    parts = []
    for name, metric, label in LAYER_METRICS:
        profiles = layer_profiles(tables, runs, metric)
        if not any(profile.shape[1] >= MIN_TREND_POINTS for profile in profiles.values()):
            parts.append(untestable(name, f"no {ROLE} point with a final {metric} at >= {MIN_TREND_POINTS} layers"))
            continue
        parts.append(decide(name, bootstrap(profiles, layer_trend), ">=", MIN_RHO, f"median rho(layer, {label})"))
    return combine(parts, diverged_note(diverged))


def analysed_layers(runs: pd.DataFrame) -> pd.Series:
    """Each CNN run's analysed layers: its conv layers (``channels``, else ``depth``) and its head's hidden layers."""

    def count(row) -> float:
        channels = json.loads(row.get("model.channels") or "null")
        head = json.loads(row.get("model.head_widths") or "[]")
        return (len(channels) if channels else float(row.get("model.depth", np.nan))) + len(head)

    return runs.apply(count, axis=1) if len(runs) else pd.Series(dtype=float)


def design_layer_structure(runs_by_role: Mapping[str, pd.DataFrame], context: Mapping[str, Any]) -> str | None:
    runs = design_role(runs_by_role, ROLE)
    if runs is None:
        return f"no {ROLE} role"
    if not (analysed_layers(runs) >= MIN_TREND_POINTS).any():
        return f"no {ROLE} run with >= {MIN_TREND_POINTS} analysed layers"
    return TOO_FEW_SEEDS if replicates(runs, POINT) < MIN_REPLICATES else None


def check_positions_in_cnns(tables_by_role: Mapping[str, RunTables], context: Mapping[str, Any]) -> Outcome:
    return check_positions(tables_by_role, ROLE)


def design_positions_in_cnns(runs_by_role: Mapping[str, pd.DataFrame], context: Mapping[str, Any]) -> str | None:
    return design_positions(runs_by_role, ROLE)


def check_basin_trends(tables_by_role: Mapping[str, RunTables], context: Mapping[str, Any]) -> Outcome:
    tables = role_tables(tables_by_role, ROLE)
    if tables is None:
        return missing(ROLE)
    parts, diverged = [], []
    for name, metric, sign in SPACES:
        points, diverged = basin_grid(tables, metric)
        if not trend_widths(list(points)):
            parts.append(untestable(name, f"no width with >= {MIN_TREND_POINTS} depths"))
            continue
        fraction = bootstrap(points, lambda m, sign=sign: depth_trend_fraction(m, sign))
        parts.append(decide(name, fraction, ">=", MAJORITY, "fraction of widths that hold"))
    return combine(parts, diverged_note(diverged))


def design_basin_trends(runs_by_role: Mapping[str, pd.DataFrame], context: Mapping[str, Any]) -> str | None:
    runs = design_role(runs_by_role, ROLE)
    if runs is None:
        return f"no {ROLE} role"
    if not trend_widths(list(zip(*model_sizes(runs), strict=True))):
        return f"no width with >= {MIN_TREND_POINTS} depths"
    return TOO_FEW_SEEDS if replicates(runs, POINT) < MIN_REPLICATES else None


CLAIMS = (
    Claim(
        13,
        "CNNs: the standard structure by layer, the RPD gradient and the OPM fraction rise with the layer (Fig. S3)",
        (ROLE,),
        f"per {ROLE} point (model.depth, model.width), the final rpd_gradient and opm_fraction of every analysed layer "
        f"(conv layers, then the head's hidden layers), seeds averaged; the median over points with >= "
        f"{MIN_TREND_POINTS} layers of Spearman rho(layer, value); {INTERVAL}",
        f"(a) median rho(layer, rpd_gradient) >= {MIN_RHO}; (b) median rho(layer, opm_fraction) >= {MIN_RHO}; each "
        "decided by its interval. Reproduced if (a) and (b) hold",
        check_layer_structure,
        beyond_paper,
        design_layer_structure,
    ),
    Claim(
        14,
        "CNNs: claim 11's standard structure, LP accurate from early layers, L-map only from a late layer (Fig. S3)",
        (ROLE,),
        f"per {ROLE} run at its final step, the first start layer l whose lp_acc (lmap_acc) is within "
        f"{PRUNING_TOLERANCE} of the unpruned test_acc, as a position (l - 1) / D over its D analysed layers; every "
        f"run a replicate; {INTERVAL.replace('seeds', 'runs')}",
        f"(a) mean LP position <= {LP_EARLY}; (b) mean L-map position >= {LMAP_LATE}; each decided by its interval. "
        "Reproduced if (a) and (b) hold",
        check_positions_in_cnns,
        beyond_paper,
        design_positions_in_cnns,
    ),
    Claim(
        15,
        "CNNs: claim 4's trends, the input basin grows and the weight basin shrinks with depth (Fig. S3)",
        (ROLE,),
        f"per space, the fraction of widths with >= {MIN_TREND_POINTS} depths whose log10 final basin (bounds "
        f"taken) has Spearman rho(model.depth, .) in the claimed direction; seeds averaged, {INTERVAL}",
        f"a width holds for input if rho >= {MIN_RHO}, for weight if rho <= -{MIN_RHO}. Each space reproduced if its "
        f"fraction >= {MAJORITY} (by its interval); saturation is not scored",
        check_basin_trends,
        beyond_paper,
        design_basin_trends,
    ),
)
