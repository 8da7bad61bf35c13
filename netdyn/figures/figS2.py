"""Fig. S2 (beyond the paper): class geometry as neural collapse and representation similarity, beside the RPD
(docs/methods.md §6.3, §24, §25).

From the ``depth`` runs (Fig. 3's): for one of them (setting ``depth``; default 23 where present, else the deepest)
(a) NC1 of every hidden layer over training and (b) the RPD gradient G of every hidden layer over training, so that
the collapse of within-class variability can be read against the order-preserving mode layer by layer; (c) the
final-step NC1 against layer for every depth; (d) the linear CKA matrix between the input (layer 0) and every hidden
layer at the run's last analysed step; (e) each hidden layer's CKA with its own final state over training; (f) the
final-step distance of the class means to a simplex ETF (NC2) against layer for every depth.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from netdyn.figures.common import (
    draw_lines,
    final_against_layer,
    finish,
    panel_run,
    plotted_table,
    role_runs,
    run_rows,
    step_axis,
)
from netdyn.figures.style import note, panels
from netdyn.tables import RunTables, scalars

ROLES = {
    "depth": "runs sweeping model.depth (Fig. 3's) with stages collapse, rpd and cka; one of them (setting depth, "
    "default 23 where present, else the deepest) feeds panels (a), (b), (d), (e)",
}
SETTINGS = {"depth": "the depth of the run drawn in panels (a), (b), (d), (e)"}


def per_layer_over_training(ax: plt.Axes, scalar: pd.DataFrame, run: str, metric: str, panel: str) -> pd.DataFrame:
    """``metric`` of every hidden layer of ``run`` against step, one line per layer (shallow dark, deep light)."""
    rows = scalar[(scalar["run"] == run) & (scalar["metric"] == metric) & scalar["layer"].notna()]
    rows = rows[np.isfinite(rows["value"])]
    points = pd.DataFrame(
        {
            "key": rows["layer"],
            "series": [f"layer {int(k)}" for k in rows["layer"]],
            "x": rows["step"],
            "y": rows["value"],
            "run": rows["run"],
            "step": rows["step"],
        }  # fmt: skip
    )
    layers = sorted(points["key"].unique())
    colours = plt.get_cmap("viridis")(np.linspace(0, 0.9, max(len(layers), 1)))
    drawn = []
    for layer, colour in zip(layers, colours, strict=False):
        drawn.append(draw_lines(ax, points[points["key"] == layer], panel, "step", metric, color=colour, marker=None))
    step_axis(ax)
    lines = ax.get_lines()
    for line in lines[1:-1] if len(lines) > 4 else []:  # a legend of the first and the last layer only
        line.set_label("_nolegend_")
    return plotted_table(drawn) if drawn else pd.DataFrame()


def cka_matrix_panel(ax: plt.Axes, fig: plt.Figure, tables: RunTables, run: str, panel: str) -> pd.DataFrame:
    rows = run_rows(tables.cka, run, kind="layers")
    if rows.empty:
        note(ax, f"{run}: no CKA matrix")
        return pd.DataFrame()
    layers = sorted(set(rows["layer_a"]) | set(rows["layer_b"]))
    matrix = np.full((len(layers), len(layers)), np.nan)
    where = {layer: index for index, layer in enumerate(layers)}
    for _, row in rows.iterrows():
        a, b = where[row["layer_a"]], where[row["layer_b"]]
        matrix[a, b] = matrix[b, a] = row["cka"]
    image = ax.imshow(matrix, origin="lower", vmin=0, vmax=1, cmap="magma")
    ticks = range(0, len(layers), max(1, len(layers) // 6))
    ax.set_xticks(list(ticks), [str(int(layers[i])) for i in ticks])
    ax.set_yticks(list(ticks), [str(int(layers[i])) for i in ticks])
    ax.set(xlabel="layer (0 = input)", ylabel="layer")
    ax.set_title(f"step {int(rows['step'].iloc[0])}", loc="right", fontsize=7)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="linear CKA")
    return pd.DataFrame(
        {
            "panel": panel,
            "series": "cka",
            "x": rows["layer_a"],
            "y": rows["layer_b"],
            "x_name": "layer_a",
            "y_name": "layer_b",
            "run": run,
            "step": rows["step"],
            "cka": rows["cka"],
        }  # fmt: skip
    )


def draw(tables: RunTables, depth: int | None = None) -> tuple[plt.Figure, pd.DataFrame]:
    """Fig. S2 from the ``depth`` runs; ``depth`` picks the run of the single-run panels."""
    fig, axes = panels(2, 3, "Fig. S2  neural collapse, RPD gradient and CKA across layers and training")
    scalar = scalars(tables)
    runs = role_runs(tables, "depth", ("model.depth",))
    run, notes = panel_run(tables, "depth", depth)
    drawn: list[pd.DataFrame] = []
    single = [(axes[0], "nc1", "a", "NC1 = tr(Σ_W Σ_B⁺)/C"), (axes[1], "rpd_gradient", "b", "RPD gradient G")]
    for ax, metric, panel, label in single:
        part = per_layer_over_training(ax, scalar, run, metric, panel) if run else pd.DataFrame()
        if metric == "nc1" and len(part) and (part["y"] > 0).all():
            ax.set_yscale("log")
        ax.set_ylabel(label)
        finish(ax, notes + ([] if len(part) or not run else [f"{run}: no {metric}"]), len(part) > 0, "no depth run")
        if run:
            ax.set_title(run, loc="right", fontsize=7)
        drawn.append(part)
    drawn += final_against_layer(axes[2], scalar, runs, "nc1", "c")
    axes[2].set_ylabel("NC1, final step")
    if len(drawn[-1]) and (drawn[-1]["y"] > 0).all():
        axes[2].set_yscale("log")
    if run:
        drawn.append(cka_matrix_panel(axes[3], fig, tables, run, "d"))
        part = per_layer_over_training(axes[4], scalar, run, "cka_to_final", "e")
        axes[4].set_ylabel("CKA with the final state")
        finish(axes[4], [] if len(part) else [f"{run}: no cka_to_final"], len(part) > 0, "no depth run")
        drawn.append(part)
    else:
        for ax in (axes[3], axes[4]):
            note(ax, "\n".join(notes) or "no depth run")
    drawn += final_against_layer(axes[5], scalar, runs, "nc2_etf", "f")
    axes[5].set_ylabel("NC2: distance to a simplex ETF")
    return fig, plotted_table(drawn)
