"""Fig. 4: a depth x width sweep of BN ReLU nets, read at the final step (methods.md §3, §6.3, §7, §8, §13).

(a) test accuracy vs depth, one curve per width; (b) first-hidden-layer RPD gradient G1 vs depth (§6.3);
(c), (d) for one width: training-sample accuracy vs input-noise (§7) and relative weight-noise (§8) amplitude, one
curve per depth; (e), (f) input and weight basin sizes vs width, one curve per depth. The paper's text for 4(f) says
"input" but describes the weight-space basin (methods.md §15); the panel title says so.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd

from netdyn.figures.common import (
    draw_lines,
    final_curve,
    finish,
    live_runs,
    plotted_table,
    role_runs,
    sweep_points,
)
from netdyn.figures.style import panels
from netdyn.tables import RunTables, scalars

ROLES = {"sweep": "deep BN ReLU nets sweeping model.depth x model.width (widths 128...1280), default init"}


def panel_vs_depth(
    ax: plt.Axes, scalar: pd.DataFrame, runs: pd.DataFrame, panel: str, metric: str, layer: int | None, ylabel: str
) -> pd.DataFrame:
    gaps: list[str] = []
    points = sweep_points(scalar, runs, metric, "model.depth", "model.width", gaps, layer=layer, label="width {:g}")
    plotted = draw_lines(ax, points, panel, "depth", metric)
    ax.set(xlabel="depth (hidden layers)", ylabel=ylabel)
    finish(ax, gaps, len(plotted) > 0, "no sweep runs")
    return plotted


def panel_noise(
    ax: plt.Axes,
    tables: RunTables,
    scalar: pd.DataFrame,
    runs: pd.DataFrame,
    width: float | None,
    space: str,
    panel: str,
) -> pd.DataFrame:
    gaps: list[str] = []
    chosen = live_runs(runs[runs["model.width"] == width], gaps) if width is not None else runs.iloc[:0]
    frames = []
    for _, run in chosen.iterrows():
        curve = final_curve(tables.basins, scalar, run["run"], space=space)
        curve = curve[curve["amplitude"] > 0] if len(curve) else curve  # the clean accuracy has no place on a log axis
        if curve.empty:
            gaps.append(f"{run['run']}: no {space} basin curve")
            continue
        depth = run["model.depth"]
        frames.append(
            pd.DataFrame(
                {"key": depth, "series": f"depth {depth:g}", "x": curve["amplitude"], "y": curve["accuracy"]}
            ).assign(run=run["run"], step=curve["step"])
        )
    points = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    plotted = draw_lines(ax, points, panel, f"{space} noise amplitude", "accuracy", marker=None)  # seeds averaged
    label = "input-noise amplitude ε" if space == "input" else "relative weight-noise amplitude ε"
    ax.set(xscale="log", xlabel=label, ylabel="training-sample accuracy")
    ax.set_title(f"width {width:g}" if width is not None else "", loc="right", fontsize=7)
    finish(ax, gaps, len(plotted) > 0, f"no runs of width {width}")
    return plotted


def panel_basin(ax: plt.Axes, scalar: pd.DataFrame, runs: pd.DataFrame, metric: str, panel: str) -> pd.DataFrame:
    gaps: list[str] = []
    points = sweep_points(scalar, runs, metric, "model.width", "model.depth", gaps, label="depth {:g}")
    plotted = draw_lines(ax, points, panel, "width", metric)
    ax.set(yscale="log", xlabel="width", ylabel=f"{metric.replace('_', ' ')} size ε*")
    finish(ax, gaps, len(plotted) > 0, "no sweep runs")
    return plotted


def draw(tables: RunTables, width: float | None = None) -> tuple[plt.Figure, pd.DataFrame]:
    """Fig. 4 from the ``sweep`` runs. ``width``: the width of panels (c), (d) (default: the largest width)."""
    fig, axes = panels(2, 3, "Fig. 4  depth x width sweep: accuracy, first-layer RPD gradient, basins")
    scalar = scalars(tables)
    runs = role_runs(tables, "sweep", ("model.depth", "model.width"))
    widths = runs.loc[runs["status"] != "diverged", "model.width"].dropna()
    width = width if width is not None else (float(widths.max()) if len(widths) else None)
    plotted = plotted_table(
        [
            panel_vs_depth(axes[0], scalar, runs, "a", "test_acc", None, "test accuracy"),
            panel_vs_depth(axes[1], scalar, runs, "b", "rpd_gradient", 1, "first-layer RPD gradient G1"),
            panel_noise(axes[2], tables, scalar, runs, width, "input", "c"),
            panel_noise(axes[3], tables, scalar, runs, width, "weight", "d"),
            panel_basin(axes[4], scalar, runs, "basin_input", "e"),
            panel_basin(axes[5], scalar, runs, "basin_weight", "f"),
        ]
    )
    axes[5].set_title("(f) weight basin (text: 'input', §15)", loc="left", fontweight="bold")
    for ax in (axes[0], axes[1]):
        ax.xaxis.get_major_locator().set_params(integer=True)
    return fig, plotted
