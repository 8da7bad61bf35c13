"""Fig. 5: basin sizes under initialization, batch size, dropout and learning rate (methods.md §1.5, §3, §7, §8, §13).

(a) weight-space basin ε*_w vs width for nets with fixed-range uniform init (§1.5), one curve per depth;
(b)-(d) for 12 x 1024 BN ReLU nets: input and weight basins (left axis, log) and final test accuracy (right axis)
against batch size, dropout rate and SGD learning rate. The paper reads the best accuracy where both basins grow
together (§8). A role without runs leaves its panel as a note.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd

from netdyn.figures.common import draw_lines, finish, plotted_table, role_runs, sweep_points
from netdyn.figures.style import panels
from netdyn.tables import RunTables, scalars

ROLES = {
    "init": "BN ReLU nets with fixed-range uniform init (model.init) sweeping model.width, possibly several depths",
    "batch": "12 x 1024 BN ReLU nets, Adam, sweeping train.batch_size",
    "dropout": "12 x 1024 BN ReLU nets, Adam, sweeping model.dropout",
    "lr": "12 x 1024 BN ReLU nets, SGD, sweeping train.lr",
}
CONDITIONS = (  # panel, role, swept spec column, x label, log x
    ("b", "batch", "train.batch_size", "batch size", True),
    ("c", "dropout", "model.dropout", "dropout rate", False),
    ("d", "lr", "train.lr", "SGD learning rate", True),
)
BASINS = (("basin_input", "input basin ε*_in"), ("basin_weight", "weight basin ε*_w"))


def panel_init(ax: plt.Axes, scalar: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    gaps: list[str] = []
    points = sweep_points(scalar, runs, "basin_weight", "model.width", "model.depth", gaps, label="depth {:g}")
    plotted = draw_lines(ax, points, "a", "width", "basin_weight")
    ax.set(yscale="log", xlabel="width", ylabel="weight basin ε*_w", title="fixed-range init")
    finish(ax, gaps, len(plotted) > 0, "no 'init' runs")
    return plotted


def panel_condition(
    ax: plt.Axes, scalar: pd.DataFrame, runs: pd.DataFrame, panel: str, role: str, column: str, label: str, log_x: bool
) -> pd.DataFrame:
    gaps: list[str] = []
    frames = []
    for order, (metric, series) in enumerate(BASINS):
        points = sweep_points(scalar, runs, metric, column, None, gaps).assign(key=order, series=series)
        frames.append(draw_lines(ax, points, panel, column, metric))
    twin = ax.twinx()
    twin.spines["right"].set_visible(True)  # the shared style hides right spines; this axis needs its own
    points = sweep_points(scalar, runs, "test_acc", column, None, gaps).assign(series="test accuracy (right)")
    frames.append(draw_lines(twin, points, panel, column, "test_acc", color="k", ls="--", marker="s"))
    ax.set(yscale="log", xlabel=label, ylabel="basin size ε*")
    ax.set_xscale("log" if log_x else "linear")
    twin.set_ylabel("test accuracy")
    plotted = plotted_table(frames)
    finish(ax, gaps, len(plotted) > 0, f"no '{role}' runs")
    (left, left_labels), (right, right_labels) = ax.get_legend_handles_labels(), twin.get_legend_handles_labels()
    if left or right:  # one legend for both axes
        ax.legend(left + right, left_labels + right_labels, frameon=False)
    return plotted


def draw(tables: RunTables) -> tuple[plt.Figure, pd.DataFrame]:
    """Fig. 5 from the ``init``, ``batch``, ``dropout`` and ``lr`` runs."""
    fig, axes = panels(2, 2, "Fig. 5  basin sizes vs init range, batch size, dropout and learning rate")
    scalar = scalars(tables)
    frames = [panel_init(axes[0], scalar, role_runs(tables, "init"))]
    for ax, (panel, role, column, label, log_x) in zip(axes[1:], CONDITIONS, strict=True):
        frames.append(panel_condition(ax, scalar, role_runs(tables, role), panel, role, column, label, log_x))
    return fig, plotted_table(frames)
