"""Fig. 2: a shallow tanh network (NNN) against its linear twin (LNN), LP and L-map (methods.md §3, §4, §5.3, §6, §13).

(a) final test accuracy vs training-set size: NNN-Tanh, LNN, LP from the input to the NNN logits (``lp_acc`` at start
layer 1) and the fully linearized NNN (``lmap_acc`` at start layer 1); (b) the same four curves over the training steps
of the largest-n runs; (c), (d) first-hidden-layer RPD of the tanh and linear runs with the smallest and the largest n;
(e) the largest-n tanh run's RPD at up to five checkpoints, and next to it (panel "e_G") its RPD gradient G(t) (§6.3).
"""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from netdyn.figures.common import draw_lines, finish, plotted_table, role_runs, rpd_lines, sweep_points
from netdyn.figures.style import panels
from netdyn.tables import RunTables, scalars

ROLES = {
    "shallow": "784-W-10 nets (one hidden layer, no BN) sweeping train.n_train x model.activation in {tanh, linear}"
}


def spread_steps(steps: list[int], count: int) -> list[int]:
    """Up to ``count`` of ``steps`` spread log-uniformly (in log(1 + step)), first and last always included."""
    steps = sorted(set(steps))
    if len(steps) <= count:
        return steps
    targets = np.linspace(math.log1p(steps[0]), math.log1p(steps[-1]), count)
    logs = np.log1p(steps)
    return sorted({steps[int(np.argmin(abs(logs - t)))] for t in targets})


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
    plotted = plotted_table(frames)
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
    plotted = plotted_table(frames)
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
    plotted = plotted_table(frames)
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
    plotted = plotted_table(
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
