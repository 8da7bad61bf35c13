"""Fig. S1 (beyond the paper): flatness three ways, side by side (docs/methods.md §8, §23, §26).

Three measures of how flat the training loss is around a network: the weight-space basin size ε*_w (stage
``basins``, larger = flatter), the top Hessian eigenvalue λ_max and the Hessian trace (stage ``hessian``, smaller =
flatter). Row 1, (a)-(c): over training for the ``grokking`` run; row 2, (d)-(f): over training for the ``depth``
runs, one line per depth (seeds averaged); row 3, (g)-(i): at the final step against depth for the ``sweep`` runs, one
line per width. The last panel of each row prints the Spearman rank correlations between the three measures over
the row's points (run and step pairs), with percentile bootstrap intervals (netdyn.correlations); they are what they
are, flat measures that agree give rho(ε*_w, λ_max) < 0. The plotted table holds the drawn points and, as rows of
series ``spearman ...``, the printed correlations.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from netdyn.correlations import FLATNESS_MEASURES, spearman_interval
from netdyn.figures.common import draw_lines, finish, live_runs, plotted_table, role_runs, step_axis, sweep_points
from netdyn.figures.style import panels
from netdyn.tables import RunTables, scalars

ROLES = {
    "grokking": "one grokking run (Fig. 6's) with stages basins and hessian at its analysed steps",
    "depth": "runs sweeping model.depth (Fig. 3's) with stages basins and hessian over training",
    "sweep": "a depth x width sweep (Fig. 4's) with stages basins and hessian at the final step",
}
LABELS = {"basin_weight": "weight basin ε*_w", "hessian_max": "top Hessian eigenvalue λ_max",
          "hessian_trace": "Hessian trace"}  # fmt: skip
SHORT = {"basin_weight": "ε*_w", "hessian_max": "λ_max", "hessian_trace": "tr H"}
PANEL_RESAMPLES = 1000


def metric_points(
    scalar: pd.DataFrame, runs: pd.DataFrame, metric: str, series_column: str | None, gaps: list[str]
) -> pd.DataFrame:
    """Every analysed step's network-level ``metric`` of ``runs``: x = step, one series per ``series_column``.
    Steps where the value is missing (a basin beyond its grid) are left out and counted in ``gaps``."""
    if scalar.empty or runs.empty:
        return pd.DataFrame(columns=["key", "series", "x", "y", "run", "step"])
    rows = scalar[(scalar["metric"] == metric) & scalar["layer"].isna() & scalar["run"].isin(runs["run"])]
    finite = np.isfinite(rows["value"])
    for run, count in rows.loc[~finite, "run"].value_counts().sort_index().items():
        gaps.append(f"{run}: no {metric} at {count} of {int((rows['run'] == run).sum())} steps")
    rows = rows[finite].merge(runs, on="run")
    key = rows[series_column] if series_column and series_column in rows.columns else pd.Series("", index=rows.index)
    return pd.DataFrame(
        {
            "key": key,
            "series": [f"depth {k:g}" if series_column else "" for k in key] if len(rows) else [],
            "x": rows["step"].astype(float),
            "y": rows["value"],
            "run": rows["run"],
            "step": rows["step"],
        }
    )


def log_if_positive(ax: plt.Axes, values: pd.Series) -> None:
    if len(values) and (values > 0).all():
        ax.set_yscale("log")


def correlation_rows(points: dict[str, pd.DataFrame], panel: str) -> pd.DataFrame:
    """Spearman rho between each pair of measures over the (run, step) points both have."""
    rows = []
    for i, a in enumerate(FLATNESS_MEASURES):
        for b in FLATNESS_MEASURES[i + 1 :]:
            left = points[a][["run", "step", "y"]] if len(points[a]) else pd.DataFrame(columns=["run", "step", "y"])
            right = points[b][["run", "step", "y"]] if len(points[b]) else pd.DataFrame(columns=["run", "step", "y"])
            both = left.merge(right, on=["run", "step"], suffixes=("_a", "_b"))
            found = spearman_interval(both["y_a"], both["y_b"], resamples=PANEL_RESAMPLES)
            rows.append({"panel": panel, "series": f"spearman {a}~{b}", "y": found["rho"], "low": found["low"],
                         "high": found["high"], "n": found["n"], "note": found["note"]})  # fmt: skip
    return pd.DataFrame(rows)


def print_correlations(ax: plt.Axes, rows: pd.DataFrame) -> None:
    lines = []
    for _, row in rows.iterrows():
        a, b = row["series"].removeprefix("spearman ").split("~")
        pair = f"ρ({SHORT[a]}, {SHORT[b]})"
        if np.isfinite(row["y"]):
            interval = f" [{row['low']:.2f}, {row['high']:.2f}]" if np.isfinite(row["low"]) else ""
            lines.append(f"{pair} = {row['y']:.2f}{interval}, n={row['n']}")
        else:
            lines.append(f"{pair}: {row['note'] or 'undefined'}")
    box = {"boxstyle": "round,pad=0.3", "facecolor": "white", "edgecolor": "0.8", "alpha": 0.9}
    ax.text(0.02, 0.98, "\n".join(lines), transform=ax.transAxes, ha="left", va="top", fontsize=6, bbox=box, zorder=5)


def over_training_row(
    axes: Sequence[plt.Axes], scalar: pd.DataFrame, runs: pd.DataFrame, letters: str, series_column: str | None
) -> list[pd.DataFrame]:
    gaps: list[str] = []
    live = live_runs(runs, gaps)
    drawn, points = [], {}
    for ax, letter, metric in zip(axes, letters, FLATNESS_MEASURES, strict=True):
        notes = list(gaps)
        points[metric] = metric_points(scalar, live, metric, series_column, notes)
        notes += [
            f"{run}: no {metric}" for run in sorted(set(live["run"]) - set(scalar["run"][scalar["metric"] == metric]))
        ]
        plotted = draw_lines(ax, points[metric], letter, "step", metric, marker=".")
        step_axis(ax)
        log_if_positive(ax, plotted["y"] if len(plotted) else pd.Series(dtype=float))
        ax.set_ylabel(LABELS[metric])
        finish(ax, notes, len(plotted) > 0, "nothing to draw" if len(runs) else "no runs for this role")
        drawn.append(plotted)
    correlations = correlation_rows(points, letters[-1])
    print_correlations(axes[-1], correlations)
    return [*drawn, correlations]


def across_depth_row(axes: Sequence[plt.Axes], scalar: pd.DataFrame, runs: pd.DataFrame, letters: str) -> list:
    drawn, points = [], {}
    for ax, letter, metric in zip(axes, letters, FLATNESS_MEASURES, strict=True):
        gaps: list[str] = []
        points[metric] = sweep_points(scalar, runs, metric, "model.depth", "model.width", gaps, label="width {:g}")
        plotted = draw_lines(ax, points[metric], letter, "depth", metric)
        log_if_positive(ax, plotted["y"] if len(plotted) else pd.Series(dtype=float))
        ax.set(xlabel="depth (hidden layers)", ylabel=f"{LABELS[metric]}, final step")
        ax.xaxis.get_major_locator().set_params(integer=True)
        finish(ax, gaps, len(plotted) > 0, "no sweep runs")
        drawn.append(plotted)
    correlations = correlation_rows(points, letters[-1])
    print_correlations(axes[-1], correlations)
    return [*drawn, correlations]


def draw(tables: RunTables) -> tuple[plt.Figure, pd.DataFrame]:
    """Fig. S1 from the ``grokking``, ``depth`` and ``sweep`` runs."""
    fig, axes = panels(3, 3, "Fig. S1  flatness three ways: weight basin, top Hessian eigenvalue, Hessian trace")
    scalar = scalars(tables)
    grokking = role_runs(tables, "grokking").head(1)
    depth = role_runs(tables, "depth", ("model.depth", "model.width"))
    sweep = role_runs(tables, "sweep", ("model.depth", "model.width"))
    drawn = over_training_row(axes[0:3], scalar, grokking, "abc", None)
    drawn += over_training_row(axes[3:6], scalar, depth, "def", "model.depth")
    drawn += across_depth_row(axes[6:9], scalar, sweep, "ghi")
    for ax, title in ((axes[0], "grokking run"), (axes[3], "depth runs"), (axes[6], "depth x width sweep")):
        ax.set_title(title, loc="right", fontsize=7)
    return fig, plotted_table(drawn)
