"""Fig. 2: a shallow tanh network (NNN) against its linear twin (LNN), LP and L-map (methods.md §3, §4, §5.3, §6, §13).

(a) final test accuracy vs training-set size: NNN-Tanh, LNN, LP from the input to the NNN logits (``lp_acc`` at start
layer 1) and the fully linearized NNN (``lmap_acc`` at start layer 1); (b) the same four curves over the training steps
of the largest-n runs; (c), (d) first-hidden-layer RPD of the tanh and linear runs with the smallest and the largest n;
(e) the largest-n tanh run's RPD at up to five checkpoints, and next to it (panel "e_G") its RPD gradient G(t) (§6.3).

This module also holds the small table helpers that figures 3–5 share: role selection, final-step values with gaps
for diverged or missing runs, and a line plotter that records exactly what it draws.
"""

from __future__ import annotations

import math
import numbers

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from netdyn.collection import RunTables
from netdyn.figures.style import note, panels

ROLES = {
    "shallow": "784-W-10 nets (one hidden layer, no BN) sweeping train.n_train x model.activation in {tanh, linear}"
}
PLOTTED_COLUMNS = ["panel", "series", "x", "y", "x_name", "y_name", "run", "step"]
SCALAR_COLUMNS = ["run", "step", "metric", "layer", "value", "note"]
MAX_NOTE_LINES = 6


# ---------------------------------------------------------------------------------------------- shared helpers


def role_runs(tables: RunTables, role: str) -> pd.DataFrame:
    """The ``runs`` rows whose role is ``role`` (an empty frame when there are none)."""
    runs = tables.runs
    if runs.empty or "role" not in runs.columns:
        return pd.DataFrame(columns=["run", "role", "status", "diverged_at"])
    return runs[runs["role"] == role].reset_index(drop=True)


def scalars(tables: RunTables) -> pd.DataFrame:
    """Every scalar value: ``metrics`` rows plus the ``history`` rows that metrics lacks (before ``collect`` ran)."""
    metrics = tables.metrics.reindex(columns=SCALAR_COLUMNS)
    history = tables.history
    if not history.empty:
        value_columns = [c for c in history.columns if c not in ("run", "step", "epoch", "wall_time")]
        melted = history.melt(id_vars=["run", "step"], value_vars=value_columns, var_name="metric")
        melted = melted.dropna(subset=["value"]).assign(layer=np.nan, note="")
        metrics = pd.concat([metrics, melted.reindex(columns=SCALAR_COLUMNS)], ignore_index=True)
    metrics = metrics.drop_duplicates(subset=["run", "step", "metric", "layer"], keep="first")
    return metrics.astype({"step": float, "layer": float, "value": float})


def final_steps(scalar: pd.DataFrame) -> dict[str, int]:
    """run -> the largest step present in its metrics or history (the final analysed step)."""
    return {run: int(step) for run, step in scalar.groupby("run")["step"].max().items()}


def diverged_note(run: str, step: object) -> str:
    """``run: diverged at step N`` (the step read back from a float column prints without ``.0``)."""
    known = isinstance(step, numbers.Real) and math.isfinite(step)
    return f"{run}: diverged at step {int(step)}" if known else f"{run}: diverged"


def live_runs(runs: pd.DataFrame, gaps: list[str]) -> pd.DataFrame:
    """The runs that did not diverge; each diverged run adds a note to ``gaps``."""
    diverged = runs["status"] == "diverged"
    for _, row in runs[diverged].iterrows():
        gaps.append(diverged_note(row["run"], row["diverged_at"]))
    return runs[~diverged]


def final_values(
    scalar: pd.DataFrame, runs: pd.DataFrame, metric: str, layer: int | None, gaps: list[str]
) -> pd.DataFrame:
    """``metric`` (at ``layer``; None = network level) at each live run's final step: columns run, step, value.

    Diverged runs, runs without the value and values that are NaN (a basin beyond the grid) are left out and
    named in ``gaps`` with the reason.
    """
    finals = final_steps(scalar)
    rows = scalar[scalar["metric"] == metric]
    rows = rows[rows["layer"].isna()] if layer is None else rows[rows["layer"] == layer]
    found = []
    where = metric if layer is None else f"{metric}[{layer}]"
    for run in live_runs(runs, gaps)["run"]:
        hit = rows[(rows["run"] == run) & (rows["step"] == finals.get(run, -1))]
        if hit.empty:
            gaps.append(f"{run}: no {where}")
        elif not np.isfinite(hit["value"].iloc[0]):
            reason = hit["note"].iloc[0]
            gaps.append(f"{run}: {where} {reason if isinstance(reason, str) and reason else 'is NaN'}")
        else:
            found.append({"run": run, "step": finals[run], "value": float(hit["value"].iloc[0])})
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


def draw_lines(ax: plt.Axes, points: pd.DataFrame, panel: str, x_name: str, y_name: str, **style) -> pd.DataFrame:
    """One line per series (ordered by ``key``, then x; seeds at one x are averaged); returns the plotted rows."""
    if points.empty:
        return pd.DataFrame(columns=PLOTTED_COLUMNS)
    points = points.assign(key=points.get("key", points["series"]))
    averaged = (
        points.groupby(["key", "series", "x"], sort=True, dropna=False)
        .agg(y=("y", "mean"), run=("run", lambda r: ";".join(sorted(r))), step=("step", "max"))
        .reset_index()
    )
    for series, line in averaged.groupby(["key", "series"], sort=True, dropna=False):
        ax.plot(line["x"], line["y"], label=series[1] or None, **({"marker": "o"} | style))
    return averaged.drop(columns="key").assign(panel=panel, x_name=x_name, y_name=y_name)[PLOTTED_COLUMNS]


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


def concat(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """Concatenate plotted tables (empty ones included) into one frame with the standard columns first."""
    frames = [f for f in frames if len(f)]
    if not frames:
        return pd.DataFrame(columns=PLOTTED_COLUMNS)
    table = pd.concat(frames, ignore_index=True)
    return table[PLOTTED_COLUMNS + [c for c in table.columns if c not in PLOTTED_COLUMNS]]


def spread_steps(steps: list[int], count: int) -> list[int]:
    """Up to ``count`` of ``steps`` spread log-uniformly (in log(1 + step)), first and last always included."""
    steps = sorted(set(steps))
    if len(steps) <= count:
        return steps
    targets = np.linspace(math.log1p(steps[0]), math.log1p(steps[-1]), count)
    logs = np.log1p(steps)
    return sorted({steps[int(np.argmin(abs(logs - t)))] for t in targets})


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
    return concat(frames)


# ---------------------------------------------------------------------------------------------- figure 2


def _n_column(runs: pd.DataFrame, n_full: int | None) -> pd.DataFrame:
    """``train.n_train`` with null (the whole training set) replaced by ``n_full`` when given."""
    runs = runs.copy()
    n = runs["train.n_train"] if "train.n_train" in runs.columns else pd.Series(np.nan, index=runs.index)
    runs["n"] = pd.to_numeric(n, errors="coerce").fillna(np.nan if n_full is None else n_full)
    return runs


def _split(runs: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    activation = runs["model.activation"] if "model.activation" in runs.columns else pd.Series("", index=runs.index)
    return runs[activation == "tanh"], runs[activation.isin(["linear", "identity"])]


def _extreme_run(runs: pd.DataFrame, largest: bool) -> str | None:
    """The non-diverged run with the largest (or smallest) n."""
    runs = runs[(runs["status"] != "diverged") & runs["n"].notna()]
    if runs.empty:
        return None
    return runs.sort_values(["n", "run"], ascending=not largest)["run"].iloc[0]


CURVES = (  # series label, which runs, metric, layer (start layer 1 = from the input, §4/§5.3)
    ("NNN-Tanh", "tanh", "test_acc", None),
    ("LNN", "linear", "test_acc", None),
    ("LP", "tanh", "lp_acc", 1),
    ("L-map", "tanh", "lmap_acc", 1),
)


def panel_a(ax: plt.Axes, scalar: pd.DataFrame, tanh: pd.DataFrame, linear: pd.DataFrame) -> pd.DataFrame:
    gaps: list[str] = []
    frames = []
    for order, (label, which, metric, layer) in enumerate(CURVES):
        runs = tanh if which == "tanh" else linear
        points = sweep_points(scalar, runs, metric, "n", None, gaps, layer=layer).assign(key=order, series=label)
        frames.append(draw_lines(ax, points, "a", "n_train", metric))
    ax.set(xscale="log", xlabel="training-set size n", ylabel="test accuracy")
    plotted = concat(frames)
    finish(ax, gaps, len(plotted) > 0, "no shallow runs")
    return plotted


def panel_b(ax: plt.Axes, scalar: pd.DataFrame, tanh_run: str | None, linear_run: str | None) -> pd.DataFrame:
    frames = []
    gaps: list[str] = []
    for order, (label, which, metric, layer) in enumerate(CURVES):
        run = tanh_run if which == "tanh" else linear_run
        rows = scalar[(scalar["run"] == run) & (scalar["metric"] == metric)]
        rows = rows[rows["layer"].isna()] if layer is None else rows[rows["layer"] == layer]
        rows = rows[np.isfinite(rows["value"])]
        if run is not None and rows.empty:
            gaps.append(f"{run}: no {metric} over steps")
        points = pd.DataFrame({"key": order, "series": label, "x": rows["step"], "y": rows["value"], "run": run})
        frames.append(draw_lines(ax, points.assign(step=rows["step"]), "b", "step", metric, marker="."))
    ax.set_xscale("symlog", linthresh=1)  # log steps, with step 0 kept visible
    ax.set(xlabel="training step", ylabel="test accuracy")
    plotted = concat(frames)
    finish(ax, gaps, len(plotted) > 0, "no largest-n run")
    return plotted


def panel_rpd(
    ax: plt.Axes, tables: RunTables, scalar: pd.DataFrame, tanh: str | None, linear: str | None, panel: str, layer: int
) -> pd.DataFrame:
    gaps: list[str] = []
    runs = {label: run for label, run in (("NNN-Tanh", tanh), ("LNN", linear)) if run is not None}
    plotted = rpd_lines(ax, tables, scalar, runs, panel, layer, gaps)
    finish(ax, gaps, len(plotted) > 0, "no run")
    return plotted


def panel_e(ax: plt.Axes, tables: RunTables, run: str | None, layer: int, checkpoints: int) -> pd.DataFrame:
    rpd = tables.rpd
    rows = rpd[(rpd["run"] == run) & (rpd["layer"] == layer)] if not rpd.empty else rpd
    steps = spread_steps([int(s) for s in rows["step"].unique()], checkpoints) if len(rows) else []
    colours = plt.cm.viridis(np.linspace(0.0, 0.9, max(len(steps), 1)))
    frames = []
    for colour, step in zip(colours, steps, strict=False):
        curve = rows[rows["step"] == step]
        points = pd.DataFrame(
            {"key": step, "series": f"step {step}", "x": curve["bin_center"], "y": curve["density"], "run": run}
        )
        style = {"marker": None, "color": colour}
        frames.append(draw_lines(ax, points.assign(step=step), "e", "normalized rank", "RPD density", **style))
    ax.axhline(1.0, color="0.7", lw=0.6, ls=":")
    ax.set(xlabel="normalized rank ρ", ylabel="RPD density")
    plotted = concat(frames)
    finish(ax, [] if run is None or steps else [f"{run}: no RPD"], len(plotted) > 0, "no largest-n tanh run")
    return plotted


def panel_gradient(ax: plt.Axes, scalar: pd.DataFrame, run: str | None, layer: int) -> pd.DataFrame:
    rows = scalar[(scalar["run"] == run) & (scalar["metric"] == "rpd_gradient") & (scalar["layer"] == layer)]
    rows = rows[np.isfinite(rows["value"])]
    points = pd.DataFrame({"series": "G(t)", "x": rows["step"], "y": rows["value"], "run": run, "step": rows["step"]})
    plotted = draw_lines(ax, points, "e_G", "step", "rpd_gradient", marker=".", color="k")
    ax.set_xscale("symlog", linthresh=1)
    ax.set(xlabel="training step", ylabel=f"RPD gradient G (layer {layer})")
    ax.set_title("(e) G(t) of the same run", loc="left", fontweight="bold")
    finish(ax, [f"{run}: no rpd_gradient[{layer}]"] if run and rows.empty else [], len(plotted) > 0, "no run")
    return plotted


def draw(
    tables: RunTables, layer: int = 1, checkpoints: int = 5, n_full: int | None = None
) -> tuple[plt.Figure, pd.DataFrame]:
    """Fig. 2 from the ``shallow`` runs. ``layer``: the hidden layer of (c)-(e); ``checkpoints``: RPDs in (e);
    ``n_full``: the training-set size of runs whose ``train.n_train`` is null (whole set), else they are gaps."""
    fig, axes = panels(2, 3, "Fig. 2  shallow NNN (tanh) vs LNN: accuracy, LP, L-map and RPD")
    scalar = scalars(tables)
    tanh, linear = _split(_n_column(role_runs(tables, "shallow"), n_full))
    small = (_extreme_run(tanh, largest=False), _extreme_run(linear, largest=False))
    large = (_extreme_run(tanh, largest=True), _extreme_run(linear, largest=True))
    plotted = concat(
        [
            panel_a(axes[0], scalar, tanh, linear),
            panel_b(axes[1], scalar, *large),
            panel_rpd(axes[2], tables, scalar, *small, "c", layer),
            panel_rpd(axes[3], tables, scalar, *large, "d", layer),
            panel_e(axes[4], tables, large[0], layer, checkpoints),
            panel_gradient(axes[5], scalar, large[0], layer),
        ]
    )
    n_of = dict(zip(tanh["run"], tanh["n"], strict=True)) | dict(zip(linear["run"], linear["n"], strict=True))
    for ax, label, run in zip(axes[1:5], "bcde", (large[0], small[0], large[0], large[0]), strict=True):
        ax.set_title(f"({label}) n = {n_of[run]:.0f}" if run else f"({label})", loc="left", fontweight="bold")
    return fig, plotted
