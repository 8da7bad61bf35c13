"""Fig. 3: a deep BN ReLU network layer by layer, and grokking over depth (methods.md §4, §5.3, §6, §9, §11.1, §13).

From the deepest ``depth`` run: (a) LP- and L-map-pruning test accuracy against the start layer l (layers 1..l-1
kept, l..L replaced; §4, §5.3) with the unpruned test accuracy as reference; (b) RPD of selected hidden layers
(1, 2, 4, 8, ... and D; §6); (c) per-sample cosine distance to the class centre against layer (thin lines, the
first samples of one digit, and their mean) with the mean inter-centre cosine similarity (§9). (d) For every depth
run: test loss, test accuracy and train accuracy against the training step, one colour per depth (§11.1).
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.ticker import MaxNLocator

from netdyn.collection import RunTables
from netdyn.figures.common import (
    diverged_note,
    draw_lines,
    final_curve,
    final_steps,
    final_values,
    finish,
    live_runs,
    plotted_table,
    role_runs,
    rpd_lines,
    scalars,
)
from netdyn.figures.style import panels

ROLES = {"depth": "deep BN ReLU nets (e.g. 23 x 1024) sweeping model.depth; the deepest one feeds panels (a)-(c)"}
HISTORY_METRICS = (("test_loss", "test loss"), ("test_acc", "test accuracy"), ("train_acc", "train accuracy"))


def deepest_run(runs: pd.DataFrame) -> tuple[str | None, list[str]]:
    """The deepest run that did not diverge (the first run id among equals, e.g. the first seed), and a note for
    every deeper run that diverged and was passed over."""
    if runs.empty or "model.depth" not in runs.columns:
        return None, []
    runs = runs.dropna(subset=["model.depth"]).sort_values(["model.depth", "run"], ascending=[False, True])
    live = runs[runs["status"] != "diverged"]
    run = live["run"].iloc[0] if len(live) else None
    deeper = runs[runs["model.depth"] > (live["model.depth"].iloc[0] if len(live) else -1)]
    return run, [f"{diverged_note(r, a)}, not used" for r, a in zip(deeper["run"], deeper["diverged_at"], strict=True)]


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
    plotted = plotted_table(frames)
    finish(ax, gaps, len(plotted) > 0, "no deep run")
    return plotted


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
    frames = []
    for ax, (metric, label) in zip(axes, HISTORY_METRICS, strict=True):
        rows = scalar[(scalar["metric"] == metric) & scalar["layer"].isna() & np.isfinite(scalar["value"])]
        for depth in depths:
            members = live[live["model.depth"] == depth]["run"]
            line = rows[rows["run"].isin(members)]
            if line.empty:
                gaps.append(f"depth {depth}: no {metric}")
                continue
            points = pd.DataFrame(
                {"key": depth, "series": f"depth {depth}", "x": line["step"], "y": line["value"], "run": line["run"]}
            )
            style = {"marker": None, "color": colours[depth]}
            frames.append(draw_lines(ax, points.assign(step=line["step"]), "d", "step", metric, **style))
        ax.set_xscale("symlog", linthresh=1)  # log steps with step 0 visible
        ax.set(xlabel="training step", ylabel=label)
        ax.set_title(f"(d) {label}", loc="left", fontweight="bold")
    plotted = plotted_table(frames)
    for ax, (metric, _) in zip(axes, HISTORY_METRICS, strict=True):
        drew = bool(len(plotted)) and bool((plotted["y_name"] == metric).any())
        finish(ax, gaps if ax is axes[0] else [], drew, f"no {metric}")
    return plotted


def draw(tables: RunTables, rpd_layers: list[int] | None = None) -> tuple[plt.Figure, pd.DataFrame]:
    """Fig. 3 from the ``depth`` runs. ``rpd_layers``: hidden layers of (b) (default 1, 2, 4, ... and D)."""
    fig, axes = panels(2, 3, "Fig. 3  deep BN ReLU network: pruning, RPD, class geometry, training curves")
    scalar = scalars(tables)
    runs = role_runs(tables, "depth")
    run, skipped = deepest_run(runs)
    depth = int(runs.loc[runs["run"] == run, "model.depth"].iloc[0]) if run else 0
    plotted = plotted_table(
        [
            panel_a(axes[0], scalar, runs, run, skipped),
            panel_b(axes[1], tables, scalar, run, depth, rpd_layers),
            panel_c(axes[2], tables, scalar, run),
            panel_d(axes[3:6], scalar, runs),
        ]
    )
    for ax, label in zip(axes[:3], "abc", strict=True):
        ax.set_title(f"({label}) depth {depth}" if run else f"({label})", loc="left", fontweight="bold")
    return fig, plotted
