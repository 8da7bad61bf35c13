"""Fig. 3: a deep BN ReLU network layer by layer, and grokking over depth (methods.md §4, §5.3, §6, §9, §11.1, §13).

From one ``depth`` run (``depth`` setting; default the 23-layer net, the paper's, where present, else the deepest):
(a) LP- and L-map-pruning test accuracy against the start layer l (layers 1..l-1 kept, l..L replaced; §4, §5.3) with
the unpruned test accuracy as reference; (b) RPD of selected hidden layers (1, 2, 4, 8, ... and D; §6), with an
inset of the RPD gradient G and the fraction of order-preserving neurons (docs/methods.md §19) of every layer;
(c) per-sample cosine distance to the class centre against layer (thin lines, the first samples of one digit, and
their mean) with the mean inter-centre cosine similarity (§9). (d) For every depth: test loss; eval-mode test
accuracy (solid) beside the train-mode-BatchNorm train accuracy (dashed), the paper's "train accuracy climbs while
test accuracy waits"; train accuracy in eval mode (solid) and train mode (dashed); one colour per depth (§11.1),
seeds averaged with their spread.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.ticker import MaxNLocator

from netdyn.figures.common import (
    draw_lines,
    final_curve,
    final_values,
    finish,
    live_runs,
    panel_run,
    plotted_table,
    role_runs,
    rpd_lines,
)
from netdyn.figures.style import panels
from netdyn.tables import RunTables, final_steps, scalars

ROLES = {
    "depth": "deep BN ReLU nets (e.g. 23 x 1024) sweeping model.depth; one of them (setting depth, default 23 where "
    "present, else the deepest) feeds panels (a)-(c)"
}
SETTINGS = {"depth": "the depth of the run drawn in panels (a)-(c)", "rpd_layers": "hidden layers drawn in (b)"}
# Panels of (d): (y label, [(metric, line style)]); train-mode BatchNorm readings dashed.
HISTORY_PANELS = (
    ("test loss", [("test_loss", "-")]),
    ("accuracy: test (eval), train (BN train mode)", [("test_acc", "-"), ("train_acc_bntrain", "--")]),
    ("train accuracy: eval (solid), BN train mode", [("train_acc", "-"), ("train_acc_bntrain", "--")]),
)
INSETS = ((0.58, 0.62, 0.38, 0.28), (0.58, 0.2, 0.38, 0.28))  # G above, OPM fraction below, right of the RPDs


def default_rpd_layers(depth: int) -> list[int]:
    """Hidden layers 1, 2, 4, 8, ... below ``depth``, and ``depth`` itself (methods.md §13 Fig. 3(b))."""
    layers = [2**k for k in range(depth.bit_length()) if 2**k < depth]
    return layers + [depth]


def layer_values(scalar: pd.DataFrame, run: str, metric: str, label: str, order: int) -> pd.DataFrame:
    """``metric`` of every layer of ``run`` at its final step, as points (x = layer)."""
    step = final_steps(scalar).get(run, -1)
    rows = scalar[(scalar["run"] == run) & (scalar["metric"] == metric) & (scalar["step"] == step)]
    rows = rows[rows["layer"].notna() & np.isfinite(rows["value"])]
    return pd.DataFrame(
        {"key": order, "series": label, "x": rows["layer"], "y": rows["value"], "run": run, "step": rows["step"]}
    )


def panel_a(
    ax: plt.Axes, scalar: pd.DataFrame, runs: pd.DataFrame, run: str | None, skipped: list[str]
) -> pd.DataFrame:
    gaps = list(skipped)
    frames = []
    for order, (metric, label) in enumerate((("lp_acc", "LP pruning"), ("lmap_acc", "L-map pruning"))):
        points = layer_values(scalar, run, metric, label, order)
        if run is not None and points.empty:
            gaps.append(f"{run}: no {metric}")
        frames.append(draw_lines(ax, points, "a", "start layer", metric))
    reference = final_values(scalar, runs[runs["run"] == run], "test_acc", None, gaps)
    for _, row in reference.iterrows():
        ax.axhline(row["value"], color="k", ls="--", lw=0.8, label="unpruned")
        drawn = {"panel": "a", "series": "unpruned", "x": np.nan, "y": row["value"], "x_name": "start layer"}
        frames.append(pd.DataFrame([drawn | {"y_name": "test_acc", "run": run, "step": row["step"]}]))
    ax.set(xlabel="start layer l (layers 1..l-1 kept)", ylabel="test accuracy")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    plotted = plotted_table(frames)
    finish(ax, gaps, len(plotted) > 0, "no deep run")
    return plotted


def panel_b(
    ax: plt.Axes, tables: RunTables, scalar: pd.DataFrame, run: str | None, depth: int, layers: list[int] | None
) -> pd.DataFrame:
    gaps: list[str] = []
    chosen = layers if layers is not None else default_rpd_layers(depth) if run else []
    colours = plt.cm.viridis(np.linspace(0.0, 0.9, max(len(chosen), 1)))
    frames = []
    for colour, layer in zip(colours, chosen, strict=False):
        ax.set_prop_cycle(color=[colour])
        frames.append(rpd_lines(ax, tables, scalar, {f"layer {layer}": run}, "b", layer, gaps))
    frames += gradient_inset(ax, scalar, run, gaps)
    plotted = plotted_table(frames)
    finish(ax, gaps, len(plotted) > 0, "no deep run")
    if ax.get_legend() is not None:
        ax.legend(frameon=False, loc="lower left")  # the insets take the right of the panel
    return plotted


def gradient_inset(ax: plt.Axes, scalar: pd.DataFrame, run: str | None, gaps: list[str]) -> list[pd.DataFrame]:
    """Two insets of (b): the RPD gradient G (top) and the OPM fraction (bottom) against the hidden layer."""
    if run is None:
        return []
    frames = []
    for bounds, (metric, label, colour, order) in zip(
        INSETS,
        (("rpd_gradient", "G", "k", 0), ("opm_fraction", "OPM fraction", "tab:green", 1)),
        strict=True,
    ):
        points = layer_values(scalar, run, metric, label, order)
        if points.empty:
            gaps.append(f"{run}: no {metric}")
            continue
        inset = ax.inset_axes(bounds)
        inset.patch.set_alpha(0.85)
        frames.append(draw_lines(inset, points, "b_inset", "layer", metric, color=colour, ms=2, lw=0.9))
        if metric == "opm_fraction":
            inset.set_ylim(-0.02, 1.02)
        inset.tick_params(labelsize=5, length=2, pad=1)
        inset.set_title(label, fontsize=5, pad=1, color=colour)
        inset.xaxis.set_major_locator(MaxNLocator(integer=True))
    return frames


def panel_c(ax: plt.Axes, tables: RunTables, scalar: pd.DataFrame, run: str | None) -> pd.DataFrame:
    gaps: list[str] = []
    frames = []
    curve = final_curve(tables.geometry, scalar, run) if run else pd.DataFrame()
    if run is not None and curve.empty:
        gaps.append(f"{run}: no geometry.csv rows at the final step")
    for sample, line in curve.groupby("sample_index") if len(curve) else ():
        points = pd.DataFrame({"key": 0, "series": f"sample {sample}", "x": line["layer"], "y": line["distance"]})
        style = {"marker": None, "color": "tab:blue", "lw": 0.3, "alpha": 0.4}
        plotted = draw_lines(ax, points.assign(run=run, step=line["step"]), "c", "layer", "cosine distance", **style)
        frames.append(plotted)
        ax.get_lines()[-1].set_label("_sample")  # one legend entry for all sample lines, on the mean
    if len(curve):
        mean = curve.groupby("layer", as_index=False).agg(y=("distance", "mean"), step=("step", "first"))
        points = pd.DataFrame({"key": 1, "series": "mean distance to own centre", "x": mean["layer"], "y": mean["y"]})
        style = {"color": "tab:blue", "lw": 1.6}
        frames.append(
            draw_lines(ax, points.assign(run=run, step=mean["step"]), "c", "layer", "cosine distance", **style)
        )
    similarity = layer_values(scalar, run, "center_similarity", "inter-centre similarity S (distance = 1 - S)", 2)
    if run is not None and similarity.empty:
        gaps.append(f"{run}: no center_similarity")
    frames.append(draw_lines(ax, similarity, "c", "layer", "center_similarity", color="tab:red"))
    ax.set(xlabel="layer l (0 = input)", ylabel="cosine distance / similarity")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    plotted = plotted_table(frames)
    finish(ax, gaps, len(plotted) > 0, "no deep run")
    return plotted


def panel_d(axes: list[plt.Axes], scalar: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    gaps: list[str] = []
    live = live_runs(runs, gaps).dropna(subset=["model.depth"]) if len(runs) else runs
    depths = sorted(live["model.depth"].astype(int).unique()) if len(live) else []
    colours = dict(zip(depths, plt.cm.plasma(np.linspace(0.0, 0.85, max(len(depths), 1))), strict=False))
    frames, drew = [], []
    for index, (ax, (label, lines)) in enumerate(zip(axes, HISTORY_PANELS, strict=True)):
        before = len(frames)
        for metric, linestyle in lines:
            rows = scalar[(scalar["metric"] == metric) & scalar["layer"].isna() & np.isfinite(scalar["value"])]
            for depth in depths:
                members = live[live["model.depth"] == depth]["run"]
                line = rows[rows["run"].isin(members)]
                if line.empty:
                    gaps.append(f"depth {depth}: no {metric}")
                    continue
                series = f"depth {depth}" + (" (BN train mode)" if metric.endswith("_bntrain") else "")
                points = pd.DataFrame(
                    {"key": depth, "series": series, "x": line["step"], "y": line["value"], "run": line["run"]}
                )
                style = {"marker": None, "color": colours[depth], "ls": linestyle}
                frames.append(draw_lines(ax, points.assign(step=line["step"]), "d", "step", metric, **style))
        drew.append(any(len(frame) for frame in frames[before:]))
        ax.set_xscale("symlog", linthresh=1)  # log steps with step 0 visible
        ax.set(xlabel="training step", ylabel=label.split(":")[0])
        ax.set_title(f"(d) {label}", loc="left", fontweight="bold", fontsize=7)
        if index:
            ax.set_ylim(-0.02, 1.02)
    plotted = plotted_table(frames)
    for ax, drawn, (label, _) in zip(axes, drew, HISTORY_PANELS, strict=True):
        finish(ax, gaps if ax is axes[0] else [], drawn, f"no {label.split(':')[0]}")
    return plotted


def draw(
    tables: RunTables, rpd_layers: list[int] | None = None, depth: int | None = None
) -> tuple[plt.Figure, pd.DataFrame]:
    """Fig. 3 from the ``depth`` runs. ``depth``: the run of panels (a)-(c) (default 23 where present, else the
    deepest); ``rpd_layers``: hidden layers of (b) (default 1, 2, 4, ... and D)."""
    fig, axes = panels(2, 3, "Fig. 3  deep BN ReLU network: pruning, RPD, class geometry, training curves")
    scalar = scalars(tables)
    runs = role_runs(tables, "depth")
    run, skipped = panel_run(tables, "depth", depth)
    drawn_depth = int(runs.loc[runs["run"] == run, "model.depth"].iloc[0]) if run else 0
    plotted = plotted_table(
        [
            panel_a(axes[0], scalar, runs, run, skipped),
            panel_b(axes[1], tables, scalar, run, drawn_depth, rpd_layers),
            panel_c(axes[2], tables, scalar, run),
            panel_d(axes[3:6], scalar, runs),
        ]
    )
    for ax, label in zip(axes[:3], "abc", strict=True):
        ax.set_title(f"({label}) depth {drawn_depth}" if run else f"({label})", loc="left", fontweight="bold")
    return fig, plotted
