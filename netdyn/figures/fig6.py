"""Figure 6: grokking of the Omnigrok-style net, its input basin and 2-D projections (methods.md §13, §12, §7, §10).

(a) train/test accuracy over steps (solid) and the accuracy of noisy training samples at fixed input-noise
amplitudes over steps (dashed, basins.csv space ``input_tracked``; amplitudes given as multiples of the run's final
input basin say so); (b) training-sample accuracy against the
input-noise amplitude at the before/after-grokking checkpoints (space ``input``); (c, d) the SVD-bottleneck
projection (h1, h2) of training samples before / after grokking; (e, f) the same for test samples.

The checkpoints are events.json ``grokking.before_step`` / ``after_step`` (the §10 rule). Where a table lacks
that step the nearest available step is drawn: the plotted table keeps both ``step`` (drawn) and
``step_requested``, and the panel title says "nearest to".
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from netdyn.figures.common import (
    divergence,
    draw_curve,
    grokking_steps,
    history_curves,
    nearest_step,
    note_all,
    plotted_table,
    projection_panel,
    role_runs,
    run_rows,
    share_pairs,
    step_axis,
    step_label,
)
from netdyn.figures.style import note, panels
from netdyn.tables import RunTables

ROLES = {
    "grokking": "one run of the 784-200-200-10 ReLU net trained the Omnigrok way (methods.md §12: 1000 MNIST points, "
    "alpha = 8, MSE, AdamW) with input basins (spaces input and input_tracked) and projections at its checkpoints",
}


def pick_run(tables: RunTables, role: str, run: str | None) -> str | None:
    """``run`` if given, else the first run (by id) that plays ``role``."""
    if run is not None:
        return run
    candidates = role_runs(tables, role)
    return None if candidates.empty else str(candidates["run"].iloc[0])


def accuracy_panel(ax: plt.Axes, tables: RunTables, run: str) -> list[pd.DataFrame]:
    """(a) train/test accuracy (solid) and tracked input-noise accuracy at fixed amplitudes (dashed) vs step."""
    drawn = history_curves(ax, tables, run, "a", {"train_acc": {"color": "C3"}, "test_acc": {"color": "C2"}})
    tracked = run_rows(tables.basins, run, space="input_tracked")
    if tracked.empty:
        note(ax, f"{run}: no tracked input-noise accuracy")
    amplitudes = sorted(tracked["amplitude"].unique()) if len(tracked) else []
    shades = plt.get_cmap("Blues")(np.linspace(0.45, 0.95, max(len(amplitudes), 1)))
    for shade, amplitude in zip(shades, amplitudes, strict=False):
        rows = tracked[tracked["amplitude"] == amplitude]
        multiple = rows["multiple"].dropna() if "multiple" in rows.columns else rows["amplitude"].iloc[:0]
        series = f"input noise eps={amplitude:.3g}" + (f" ({multiple.iloc[0]:g} x basin)" if len(multiple) else "")
        part = draw_curve(
            ax, rows["step"], rows["accuracy"], "a", series, "step", "accuracy", run, color=shade, ls="--"
        )
        drawn.append(part.assign(step=part["x"], amplitude=amplitude))
    step_axis(ax)
    ax.set_ylabel("accuracy")
    ax.set_ylim(-0.02, 1.02)
    if any(len(part) for part in drawn):
        ax.legend(loc="best")
    return drawn


def basin_panel(ax: plt.Axes, tables: RunTables, run: str, checkpoints: tuple[int, int]) -> list[pd.DataFrame]:
    """(b) training-sample accuracy vs input-noise amplitude at the before/after-grokking checkpoints (§7)."""
    basins = run_rows(tables.basins, run, space="input")
    basins = basins[pd.to_numeric(basins["amplitude"], errors="coerce") > 0] if len(basins) else basins  # log axis
    if basins.empty:
        note(ax, f"{run}: no input-basin curves")
        return []
    drawn = []
    for when, requested, color in (("before", checkpoints[0], "0.5"), ("after", checkpoints[1], "C3")):
        used = nearest_step(basins["step"], requested)
        rows = basins[basins["step"] == used]
        series = f"{when} ({step_label(used, requested)})"
        part = draw_curve(
            ax, rows["amplitude"], rows["accuracy"], "b", series, "amplitude", "accuracy", run, color=color, marker="o"
        )
        drawn.append(part.assign(step=used, step_requested=requested, when=when))
    ax.set_xscale("log")
    ax.set_xlabel("input-noise amplitude $\\epsilon$")
    ax.set_ylabel("training-sample accuracy")
    ax.set_ylim(-0.02, 1.02)
    ax.legend(loc="best")
    return drawn


def draw(
    tables: RunTables, *, run: str | None = None, digits: Sequence[int] | None = None
) -> tuple[plt.Figure, pd.DataFrame]:
    """Fig. 6 of the ``grokking`` run (or ``run``); ``digits`` = the digits to project (default: all in the table)."""
    run = pick_run(tables, "grokking", run)
    fig, axes = panels(2, 3, f"Fig. 6: grokking of {run}" if run else "Fig. 6: grokking")
    if run is None:
        note_all(axes, "no run with role 'grokking'")
        return fig, plotted_table([])
    if (why := divergence(tables, run)) is not None:
        note_all(axes, why)
        return fig, plotted_table([])
    drawn = accuracy_panel(axes[0], tables, run)
    checkpoints = grokking_steps(tables, run)
    if checkpoints is None:
        note_all(axes[1:], f"{run}: no grokking checkpoints (events.json)")
        return fig, plotted_table(drawn)
    drawn += basin_panel(axes[1], tables, run, checkpoints)
    for (panel, ax), split, when in zip(
        zip("cdef", axes[2:], strict=True), ("train", "train", "test", "test"), ("before", "after") * 2, strict=True
    ):
        step = checkpoints[0] if when == "before" else checkpoints[1]
        drawn.append(projection_panel(ax, tables, run, panel, split, "eval", step, when, digits))
    share_pairs([(axes[2], axes[3]), (axes[4], axes[5])])
    return fig, plotted_table(drawn)
