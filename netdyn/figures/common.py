"""Helpers shared by several of Figs. 2–9: runs by role, notes for gaps, and plotters that record what they draw.

Selecting the runs that play a role; reading scalar values and curve rows at a run's final step (or at the step
nearest to a checkpoint), leaving diverged and missing runs out as named gaps; line, RPD, history and projection
plotters that return exactly the numbers they draw; and joining those numbers into one plotted table.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from netdyn.figures.style import note, panels
from netdyn.tables import RunTables, final_steps
from netdyn.tables import final_values as tables_final_values
from netdyn.tables import live_runs as tables_live_runs

PLOTTED_COLUMNS = ["panel", "series", "x", "y", "x_name", "y_name", "run", "step"]
MAX_NOTE_LINES = 6
MAX_GRID_RUNS = 4  # runs drawn by run_panels, one per panel of its 2 x 2 grid
DIGIT_COLORS = plt.get_cmap("tab10")  # a digit keeps its colour in every panel and figure


# ---------------------------------------------------------------------------------------------- runs and gaps


def role_runs(tables: RunTables, role: str, columns: Sequence[str] = ()) -> pd.DataFrame:
    """The ``runs`` rows that play ``role``, ordered by run id (an empty frame when there are none), with the spec
    ``columns`` a figure reads present (empty where no run sets them).

    The order makes "the first run" and the order of the gap notes independent of the order the runs were loaded in.
    """
    runs = tables.runs
    if runs.empty or "role" not in runs.columns:
        runs = pd.DataFrame(columns=["run", "role", "status", "diverged_at"])
    else:
        runs = runs[runs["role"] == role].sort_values("run", kind="stable").reset_index(drop=True)
    for column in columns:
        if column not in runs.columns:
            runs[column] = pd.Series(dtype=float)
    return runs


def diverged_note(run: str, step: object) -> str:
    """The gap note ``run: diverged at step N`` of a run known to have diverged (a float step prints without ``.0``)."""
    known = isinstance(step, numbers.Real) and math.isfinite(step)
    return f"{run}: diverged at step {int(step)}" if known else f"{run}: diverged"


def divergence(tables: RunTables, run: str) -> str | None:
    """Whether ``run`` diverged (run.json or events.json): a whole-panel note such as "run x diverged at step 40",
    else None."""
    row = tables.runs[tables.runs["run"] == run] if "run" in tables.runs.columns else tables.runs.iloc[:0]
    event = tables.events.get(run, {})
    if event.get("status") != "diverged" and not (len(row) and row["status"].iloc[0] == "diverged"):
        return None
    at = event.get("diverged_at")
    if at is None and len(row) and "diverged_at" in row.columns:
        at = row["diverged_at"].iloc[0]
    return f"{run} diverged" + (f" at step {int(at)}" if at is not None and pd.notna(at) else "")


def live_runs(runs: pd.DataFrame, gaps: list[str]) -> pd.DataFrame:
    """The runs that did not diverge; each diverged run adds a note to ``gaps``."""
    live = tables_live_runs(runs)
    for _, row in runs.drop(live.index).iterrows():
        gaps.append(diverged_note(row["run"], row["diverged_at"]))
    return live


# ---------------------------------------------------------------------------------------------- reading tables


def final_values(
    scalar: pd.DataFrame, runs: pd.DataFrame, metric: str, layer: int | None, gaps: list[str]
) -> pd.DataFrame:
    """``metric`` (at ``layer``; None = network level) at each live run's final step: columns run, step, value.

    Diverged runs, runs without the value and values that are NaN (a basin beyond the grid) are left out and
    named in ``gaps`` with the reason.
    """
    rows = tables_final_values(scalar, metric, layer)
    found = []
    where = metric if layer is None else f"{metric}[{layer}]"
    for run in live_runs(runs, gaps)["run"]:
        hit = rows[rows["run"] == run]
        if hit.empty:
            gaps.append(f"{run}: no {where}")
        elif not np.isfinite(hit["value"].iloc[0]):
            reason = hit["note"].iloc[0]
            gaps.append(f"{run}: {where} {reason if isinstance(reason, str) and reason else 'is NaN'}")
        else:
            found.append({"run": run, "step": int(hit["step"].iloc[0]), "value": float(hit["value"].iloc[0])})
    return pd.DataFrame(found, columns=["run", "step", "value"])


def sweep_points(
    scalar: pd.DataFrame,
    runs: pd.DataFrame,
    metric: str,
    x_column: str,
    series_column: str | None,
    gaps: list[str],
    layer: int | None = None,
    label: str = "{}",
) -> pd.DataFrame:
    """Final-step ``metric`` of every run against its spec column ``x_column``, one series per ``series_column``."""
    values = final_values(scalar, runs, metric, layer, gaps)
    points = values.merge(runs, on="run")
    missing_x = points[x_column].isna() if x_column in points.columns else pd.Series(True, index=points.index)
    for run in points.loc[missing_x, "run"]:
        gaps.append(f"{run}: {x_column} not set")
    points = points[~missing_x]
    key = points.get(series_column, pd.Series(np.nan, index=points.index)) if series_column else ""
    key = pd.Series(key, index=points.index)
    return pd.DataFrame(
        {
            "key": key,
            "series": [label.format(k) for k in key],
            "x": points[x_column].astype(float) if len(points) else [],
            "y": points["value"],
            "run": points["run"],
            "step": points["step"],
        }
    )


def final_curve(frame: pd.DataFrame, scalar: pd.DataFrame, run: str, **match: object) -> pd.DataFrame:
    """Rows of a curve table (rpd, basins, geometry) for ``run`` at its final step whose columns equal ``match``."""
    if frame.empty:
        return frame
    rows = frame[(frame["run"] == run) & (frame["step"] == final_steps(scalar).get(run, -1))]
    for column, value in match.items():
        rows = rows[rows[column] == value]
    return rows


def run_rows(frame: pd.DataFrame, run: str, **equal: Any) -> pd.DataFrame:
    """Rows of ``frame`` for ``run`` whose columns equal the given values; empty if the table or a column is missing."""
    if frame.empty or "run" not in frame.columns or any(column not in frame.columns for column in equal):
        return frame.iloc[:0]
    keep = frame["run"] == run
    for column, value in equal.items():
        keep &= frame[column] == value
    return frame[keep]


def grokking_steps(tables: RunTables, run: str, key: str = "grokking") -> tuple[int, int] | None:
    """The (before, after) checkpoints of an events.json reading (``grokking``, methods.md §10, or ``bn_grokking``,
    docs/methods.md §20), or None without them."""
    grok = (tables.events.get(run) or {}).get(key) or {}
    before, after = grok.get("before_step"), grok.get("after_step")
    return None if before is None or after is None else (int(before), int(after))


PAPER_PANEL_DEPTH = 23  # the paper's Figs. 3(a-c) and 7 show the 23-layer net


def panel_run(tables: RunTables, role: str, depth: int | None = None) -> tuple[str | None, list[str]]:
    """The run of ``role`` drawn in a single-run panel: the first live run (by id, e.g. the first seed) with
    ``model.depth`` = ``depth``; by default 23 (the paper's net) where such a run exists, else the deepest. Returns the
    run (None when there is none) and notes for the panel: diverged runs passed over, or a requested depth missing.
    """
    runs = role_runs(tables, role)
    if runs.empty or "model.depth" not in runs.columns:
        return None, [f"no run with role '{role}'" if runs.empty else "no run with a model.depth"]
    runs = runs.assign(_depth=pd.to_numeric(runs["model.depth"], errors="coerce")).dropna(subset=["_depth"])
    runs = runs.sort_values(["_depth", "run"], ascending=[False, True], kind="stable")
    dead = {run: divergence(tables, run) for run in runs["run"]}
    live = runs[[dead[run] is None for run in runs["run"]]]
    wanted = PAPER_PANEL_DEPTH if depth is None else depth
    match = live[live["_depth"] == wanted]
    chosen = match.iloc[0] if len(match) else live.iloc[0] if len(live) else None
    notes = []
    if depth is not None and not len(match):
        notes.append(f"no live run of depth {depth}" + (", the deepest is drawn" if chosen is not None else ""))
    floor = chosen["_depth"] if chosen is not None else -math.inf
    for _, row in runs[runs["_depth"] >= floor].iterrows():
        if dead[row["run"]]:
            at = row.get("diverged_at")
            at = (tables.events.get(row["run"]) or {}).get("diverged_at") if at is None or pd.isna(at) else at
            notes.append(f"{diverged_note(row['run'], at)}, not used")
    if chosen is None:
        return None, notes or [f"every '{role}' run diverged"]
    return str(chosen["run"]), notes


def nearest_step(steps: Sequence[int] | np.ndarray | pd.Series, target: int) -> int | None:
    """The available step closest to ``target`` (the earlier one on a tie), or None when there are none."""
    available = np.unique(np.asarray(steps, dtype=np.int64))
    return None if available.size == 0 else int(available[np.argmin(np.abs(available - target))])


def step_label(used: int, requested: int) -> str:
    return f"step {used}" if used == requested else f"step {used}, nearest to {requested}"


# ---------------------------------------------------------------------------------------------- drawing


def draw_lines(ax: plt.Axes, points: pd.DataFrame, panel: str, x_name: str, y_name: str, **style) -> pd.DataFrame:
    """One line per series (ordered by ``key``, then x); returns the plotted rows.

    Several runs at one x (seeds) are averaged: the line is their mean and a band shows mean ± one standard
    deviation across them; the plotted rows carry ``y_sd`` (NaN for a single run) and ``n`` (runs averaged).
    """
    if points.empty:
        return pd.DataFrame(columns=[*PLOTTED_COLUMNS, "y_sd", "n"])
    points = points.assign(key=points.get("key", points["series"]))
    averaged = (
        points.groupby(["key", "series", "x"], sort=True, dropna=False)
        .agg(
            y=("y", "mean"),
            y_sd=("y", "std"),
            n=("y", "size"),
            run=("run", lambda r: ";".join(sorted(r))),
            step=("step", "max"),
        )
        .reset_index()
    )
    for series, line in averaged.groupby(["key", "series"], sort=True, dropna=False):
        (drawn,) = ax.plot(line["x"], line["y"], label=series[1] or None, **({"marker": "o"} | style))
        if (line["n"] > 1).any():
            spread = line["y_sd"].fillna(0.0)
            ax.fill_between(
                line["x"], line["y"] - spread, line["y"] + spread, color=drawn.get_color(), alpha=0.18, lw=0
            )
    columns = [*PLOTTED_COLUMNS, "y_sd", "n"]
    return averaged.drop(columns="key").assign(panel=panel, x_name=x_name, y_name=y_name)[columns]


def final_against_layer(ax: plt.Axes, scalar: pd.DataFrame, runs: pd.DataFrame, metric: str, panel: str) -> list:
    """``metric`` against hidden layer at each live run's final step, one line per depth (seeds averaged; runs that
    differ in anything else, a width, are averaged too: pass the runs of one width)."""
    gaps: list[str] = []
    live = live_runs(runs, gaps)
    if scalar.empty or live.empty:
        finish(ax, gaps, False, "no depth runs")
        return [pd.DataFrame()]
    finals = final_steps(scalar)
    rows = scalar[(scalar["metric"] == metric) & scalar["layer"].notna() & scalar["run"].isin(live["run"])]
    rows = rows[(rows["step"] == rows["run"].map(finals)) & np.isfinite(rows["value"])].merge(live, on="run")
    for run in sorted(set(live["run"]) - set(rows["run"])):
        gaps.append(f"{run}: no {metric}")
    points = pd.DataFrame(
        {
            "key": rows.get("model.depth", pd.Series(dtype=float)),
            "x": rows["layer"],
            "y": rows["value"],
            "run": rows["run"],
            "step": rows["step"],
        }  # fmt: skip
    )
    points["series"] = [f"depth {k:g}" for k in points["key"]]
    plotted = draw_lines(ax, points, panel, "layer", metric)
    ax.set_xlabel("hidden layer")
    ax.xaxis.get_major_locator().set_params(integer=True)
    finish(ax, gaps, len(plotted) > 0, "no depth runs")
    return [plotted]


def draw_curve(
    ax: plt.Axes, x: pd.Series, y: pd.Series, panel: str, series: str, x_name: str, y_name: str, run: str, **style: Any
) -> pd.DataFrame:
    """Draw y(x) of one run without its missing values (gaps, never zeros) and return the drawn numbers."""
    frame = pd.DataFrame({"x": pd.to_numeric(x, errors="coerce"), "y": pd.to_numeric(y, errors="coerce")})
    frame = frame.dropna().sort_values("x", kind="stable")
    if frame.empty:
        return frame
    ax.plot(frame["x"], frame["y"], label=series, **style)
    return frame.assign(panel=panel, series=series, x_name=x_name, y_name=y_name, run=run)


def step_axis(ax: plt.Axes) -> None:
    """Log step axis; symlog keeps step 0 (the initial network) on it instead of silently dropping it."""
    ax.set_xscale("symlog", linthresh=1.0, linscale=0.3)
    ax.set_xlabel("step")


def rpd_lines(
    ax: plt.Axes, tables: RunTables, scalar: pd.DataFrame, runs: dict[str, str], panel: str, layer: int, gaps: list
) -> pd.DataFrame:
    """Final-step RPD density vs normalized rank of hidden ``layer`` for each ``series label -> run``."""
    frames = []
    for series, run in runs.items():
        curve = final_curve(tables.rpd, scalar, run, layer=layer)
        if curve.empty:
            gaps.append(f"{run}: no RPD of layer {layer}")
            continue
        points = pd.DataFrame(
            {"key": series, "series": series, "x": curve["bin_center"], "y": curve["density"], "run": run}
        ).assign(step=curve["step"])
        frames.append(draw_lines(ax, points, panel, "normalized rank", "RPD density", marker=None))
    ax.axhline(1.0, color="0.7", lw=0.6, ls=":")  # the flat density of a layer without rank structure
    ax.set(xlabel="normalized rank ρ", ylabel="RPD density")
    return plotted_table(frames)


def history_curves(ax: plt.Axes, tables: RunTables, run: str, panel: str, columns: dict[str, dict]) -> list:
    """Columns of the run's history.csv against step, one line each (``columns``: name -> line style)."""
    history = run_rows(tables.history, run)
    drawn = []
    for column, style in columns.items():
        if column in history.columns:
            part = draw_curve(ax, history["step"], history[column], panel, column, "step", column, run, **style)
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
    return projection_rows(frame, panel, "digit " + frame["label"].astype(str), step, when)


def projection_rows(points: pd.DataFrame, panel: str, series: Any, requested: int, when: str) -> pd.DataFrame:
    """Plotted-table rows of projection ``points`` drawn at (h1, h2) in ``panel``, for the checkpoint ``when``."""
    return points.drop(columns=["h1", "h2"]).assign(
        panel=panel,
        series=series,
        x=points["h1"],
        y=points["h2"],
        x_name="h1",
        y_name="h2",
        step_requested=requested,
        when=when,
    )


def run_panels(
    title: str, runs: pd.DataFrame, notes: tuple[str, str], draw_panel: Callable[[plt.Axes, pd.Series, str], list]
) -> tuple[plt.Figure, pd.DataFrame]:
    """A 2 x 2 figure of one run per panel (the first 4 of ``runs``), panels a-d drawn by ``draw_panel(ax, run,
    letter)``; ``notes`` = (text when there is no run at all, text for a panel left without a run)."""
    extra = f" (first {MAX_GRID_RUNS} of {len(runs)})" if len(runs) > MAX_GRID_RUNS else ""
    fig, axes = panels(2, 2, f"{title}{extra}")
    drawn = []
    for index, ax in enumerate(axes):
        if index >= len(runs):
            note(ax, notes[0] if runs.empty else notes[1])
            continue
        drawn += draw_panel(ax, runs.iloc[index], "abcd"[index])
    return fig, plotted_table(drawn)


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


# ---------------------------------------------------------------------------------------------- notes and output


def finish(ax: plt.Axes, gaps: list[str], drew: bool, empty: str) -> None:
    """Legend when something was drawn; otherwise note ``empty``; list the gaps (diverged or missing runs)."""
    lines = list(dict.fromkeys(gaps))
    if len(lines) > MAX_NOTE_LINES:
        lines = lines[:MAX_NOTE_LINES] + [f"... and {len(lines) - MAX_NOTE_LINES} more"]
    if not drew:
        lines.insert(0, empty)
    if lines:
        note(ax, "\n".join(lines))
    if drew and ax.get_legend_handles_labels()[0]:
        ax.legend(frameon=False)


def note_all(axes: Sequence[plt.Axes], text: str) -> None:
    for ax in axes:
        note(ax, text)


def plotted_table(parts: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """One long table of the drawn numbers (empty parts skipped), the standard columns first and always present."""
    present = [part for part in parts if len(part)]
    if not present:
        return pd.DataFrame(columns=PLOTTED_COLUMNS)
    table = pd.concat(present, ignore_index=True)
    for column in PLOTTED_COLUMNS:
        if column not in table.columns:
            table[column] = np.nan
    return table[PLOTTED_COLUMNS + [c for c in table.columns if c not in PLOTTED_COLUMNS]]
