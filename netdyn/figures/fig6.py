"""Figure 6: grokking of the Omnigrok-style net, its input basin and 2-D projections (methods.md §13, §12, §7, §10).

(a) train/test accuracy over steps (solid) and the accuracy of noisy training samples at fixed input-noise
amplitudes over steps (dashed, basins.csv space ``input_tracked``); (b) training-sample accuracy against the
input-noise amplitude at the before/after-grokking checkpoints (space ``input``); (c, d) the SVD-bottleneck
projection (h1, h2) of training samples before / after grokking; (e, f) the same for test samples.

The checkpoints are events.json ``grokking.before_step`` / ``after_step`` (the §10 rule). Where a table lacks
that step the nearest available step is drawn: the plotted table keeps both ``step`` (drawn) and
``step_requested``, and the panel title says "nearest to". The helpers here are shared by Figs. 7, 8 and 9.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from netdyn.collection import RunTables
from netdyn.figures.style import note, panels

ROLES = {
    "grokking": "one run of the 784-200-200-10 ReLU net trained the Omnigrok way (methods.md §12: 1000 MNIST points, "
    "alpha = 8, MSE, AdamW) with input basins (spaces input and input_tracked) and projections at its checkpoints",
}
COLUMNS = ["panel", "series", "x", "y", "x_name", "y_name", "run", "step"]
DIGIT_COLORS = plt.get_cmap("tab10")  # a digit keeps its colour in every panel and figure


# ---------------------------------------------------------------------------------------------------------------
# helpers shared by Figs. 6-9


def role_runs(tables: RunTables, role: str) -> pd.DataFrame:
    """The rows of ``tables.runs`` that play ``role``, ordered by run id (empty when there are none)."""
    runs = tables.runs
    if runs.empty or "role" not in runs.columns:
        return pd.DataFrame(columns=["run", "role", "status"])
    return runs[runs["role"] == role].sort_values("run", kind="stable").reset_index(drop=True)


def divergence(tables: RunTables, run: str) -> str | None:
    """A note such as "run x diverged at step 40" when the run diverged (run.json or events.json), else None."""
    row = tables.runs[tables.runs["run"] == run] if "run" in tables.runs.columns else tables.runs.iloc[:0]
    event = tables.events.get(run, {})
    if event.get("status") != "diverged" and not (len(row) and row["status"].iloc[0] == "diverged"):
        return None
    at = event.get("diverged_at")
    if at is None and len(row) and "diverged_at" in row.columns:
        at = row["diverged_at"].iloc[0]
    return f"{run} diverged" + (f" at step {int(at)}" if at is not None and pd.notna(at) else "")


def run_rows(frame: pd.DataFrame, run: str, **equal: Any) -> pd.DataFrame:
    """Rows of ``frame`` for ``run`` whose columns equal the given values; empty if the table or a column is missing."""
    if frame.empty or "run" not in frame.columns or any(column not in frame.columns for column in equal):
        return frame.iloc[:0]
    keep = frame["run"] == run
    for column, value in equal.items():
        keep &= frame[column] == value
    return frame[keep]


def grokking_steps(tables: RunTables, run: str) -> tuple[int, int] | None:
    """The (before, after) grokking checkpoints of events.json (methods.md §10), or None without events."""
    grok = tables.events.get(run, {}).get("grokking") or {}
    before, after = grok.get("before_step"), grok.get("after_step")
    return None if before is None or after is None else (int(before), int(after))


def nearest_step(steps: Sequence[int] | np.ndarray | pd.Series, target: int) -> int | None:
    """The available step closest to ``target`` (the earlier one on a tie), or None when there are none."""
    available = np.unique(np.asarray(steps, dtype=np.int64))
    return None if available.size == 0 else int(available[np.argmin(np.abs(available - target))])


def step_label(used: int, requested: int) -> str:
    return f"step {used}" if used == requested else f"step {used}, nearest to {requested}"


def step_axis(ax: plt.Axes) -> None:
    """Log step axis; symlog keeps step 0 (the initial network) on it instead of silently dropping it."""
    ax.set_xscale("symlog", linthresh=1.0, linscale=0.3)
    ax.set_xlabel("step")


def curve(
    ax: plt.Axes, x: pd.Series, y: pd.Series, panel: str, series: str, x_name: str, y_name: str, run: str, **style: Any
) -> pd.DataFrame:
    """Draw y(x) without its missing values (gaps, never zeros) and return the drawn numbers."""
    frame = pd.DataFrame({"x": pd.to_numeric(x, errors="coerce"), "y": pd.to_numeric(y, errors="coerce")})
    frame = frame.dropna().sort_values("x", kind="stable")
    if frame.empty:
        return frame
    ax.plot(frame["x"], frame["y"], label=series, **style)
    return frame.assign(panel=panel, series=series, x_name=x_name, y_name=y_name, run=run)


def history_curves(ax: plt.Axes, tables: RunTables, run: str, panel: str, columns: dict[str, dict]) -> list:
    """Columns of the run's history.csv against step, one line each (``columns``: name -> line style)."""
    history = run_rows(tables.history, run)
    drawn = []
    for column, style in columns.items():
        if column in history.columns:
            part = curve(ax, history["step"], history[column], panel, column, "step", column, run, **style)
            drawn.append(part.assign(step=part["x"]))
    if not any(len(part) for part in drawn):
        note(ax, f"{run}: no history")
    return drawn


def projection_points(
    tables: RunTables, run: str, split: str, bn_mode: str, step: int, digits: Sequence[int] | None = None
) -> tuple[pd.DataFrame, int | None]:
    """The run's projection rows at the available step nearest to ``step`` (and that step)."""
    frame = run_rows(tables.projection, run, split=split, bn_mode=bn_mode)
    if digits is not None and len(frame):
        frame = frame[frame["label"].isin(list(digits))]
    used = nearest_step(frame["step"], step) if len(frame) else None
    return (frame[frame["step"] == used] if used is not None else frame), used


def projection_panel(
    ax: plt.Axes,
    tables: RunTables,
    run: str,
    panel: str,
    split: str,
    bn_mode: str,
    step: int,
    when: str,
    digits: Sequence[int] | None = None,
) -> pd.DataFrame:
    """Scatter h1 vs h2 of one split at one checkpoint, coloured by digit (methods.md §10)."""
    frame, used = projection_points(tables, run, split, bn_mode, step, digits)
    if used is None or frame.empty:
        note(ax, f"{run}: no {split} projection (bn_mode {bn_mode})")
        return frame.iloc[:0]
    for digit, group in frame.groupby("label", sort=True):
        ax.scatter(
            group["h1"],
            group["h2"],
            s=4,
            color=DIGIT_COLORS(int(digit) % 10),
            alpha=0.6,
            linewidths=0,
            label=str(digit),
        )
    ax.legend(title="digit", markerscale=2, loc="best")
    ax.set_title(f"{split}, {when} ({step_label(used, step)})")
    ax.set_xlabel("$h_1$")
    ax.set_ylabel("$h_2$")
    drawn = frame.assign(
        panel=panel,
        series="digit " + frame["label"].astype(str),
        x=frame["h1"],
        y=frame["h2"],
        x_name="h1",
        y_name="h2",
        step_requested=step,
        when=when,
    )
    return drawn.drop(columns=["h1", "h2"])


def comparable(axes: Sequence[plt.Axes], max_ratio: float = 10.0) -> bool:
    """Whether panels can share one range: both hold data and neither cloud is ``max_ratio`` times wider (in x or
    y) than the other, which would shrink it to a dot."""
    if not all(ax.has_data() for ax in axes):
        return False
    for get in (plt.Axes.get_xlim, plt.Axes.get_ylim):
        spans = np.diff(np.array([get(ax) for ax in axes]), axis=1)
        if spans.max() > max_ratio * spans.min():
            return False
    return True


def share_limits(axes: Sequence[plt.Axes]) -> None:
    """Give the panels one common x and y range (the union of their own ranges)."""
    for get, set_ in ((plt.Axes.get_xlim, plt.Axes.set_xlim), (plt.Axes.get_ylim, plt.Axes.set_ylim)):
        limits = np.array([get(ax) for ax in axes])
        for ax in axes:
            set_(ax, limits[:, 0].min(), limits[:, 1].max())


def share_pairs(before_after: Sequence[tuple[plt.Axes, plt.Axes]]) -> None:
    """Share the range of each before/after pair so they compare by eye; where that is not sensible (scales differ
    by more than 10x), share instead the panels of one checkpoint, consecutive pairs being train then test of one
    mode (same SVD basis, so one sees test points land on the training clusters, §10)."""
    if all(comparable(pair) for pair in before_after):
        for pair in before_after:
            share_limits(pair)
        return
    for (before_1, after_1), (before_2, after_2) in zip(before_after[::2], before_after[1::2], strict=True):
        for same_step in ((before_1, before_2), (after_1, after_2)):
            if comparable(same_step):
                share_limits(same_step)


def note_all(axes: Sequence[plt.Axes], text: str) -> None:
    for ax in axes:
        note(ax, text)


def plotted_table(parts: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """One long table of the drawn numbers, the contract's columns first."""
    present = [part for part in parts if len(part)]
    if not present:
        return pd.DataFrame(columns=COLUMNS)
    table = pd.concat(present, ignore_index=True)
    for column in COLUMNS:
        if column not in table.columns:
            table[column] = np.nan
    return table[COLUMNS + [c for c in table.columns if c not in COLUMNS]]


def pick_run(tables: RunTables, role: str, run: str | None) -> str | None:
    """``run`` if given, else the first run (by id) that plays ``role``."""
    if run is not None:
        return run
    candidates = role_runs(tables, role)
    return None if candidates.empty else str(candidates["run"].iloc[0])


# ---------------------------------------------------------------------------------------------------------------
# Fig. 6 panels


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
        series = f"input noise eps={amplitude:.3g}"
        part = curve(ax, rows["step"], rows["accuracy"], "a", series, "step", "accuracy", run, color=shade, ls="--")
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
        part = curve(
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
