"""Figure 9: RPD gradient and neuron modes of every hidden layer over training, against double descent (methods.md
§13, §11.4, §6.3; docs/methods.md §19, §2).

Up to 4 ``depth`` runs (by depth), each with two panels: G_m(t) = ``rpd_gradient`` of hidden layer m against step,
one line per layer coloured by its index, each layer's turning point t*_m = argmax_t G_m(t) marked (a maximum at the
first or last analysed step is none), and the test loss on a twin axis (dashed black); below it, the fraction of
order-preserving neurons of each layer (``opm_fraction``) against step. Rows: G of runs 1-2, their OPM fractions,
G of runs 3-4, their OPM fractions. The title gives events.json's double-descent flag and the turning-point spread,
the std of log10(t*_m + 1) across the layers that turn (``netdyn.events.turning_point_spread``), with how many do:
small in a run with double descent ("synchronous" layers), larger without.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.ticker import MaxNLocator

from netdyn.events import turning_point_spread
from netdyn.figures.common import MAX_GRID_RUNS, divergence, draw_curve, plotted_table, role_runs, run_rows, step_axis
from netdyn.figures.style import note, panels
from netdyn.tables import RunTables

ROLES = {
    "depth": "deep BatchNorm ReLU nets of one experiment sweeping model.depth (methods.md §3 Fig. 3(d)/9, §11.4), "
    "with rpd_gradient at many checkpoints; Fig. 9 draws up to 4 of them, shallowest first",
}
LAYER_COLORS = plt.get_cmap("viridis")


def ordered_runs(tables: RunTables) -> pd.DataFrame:
    """The ``depth`` runs ordered by model.depth, then run id."""
    runs = role_runs(tables, "depth")
    if runs.empty:
        return runs
    depth = pd.to_numeric(runs.get("model.depth", pd.Series(float("nan"), index=runs.index)), errors="coerce")
    return runs.assign(_depth=depth).sort_values(["_depth", "run"], kind="stable").reset_index(drop=True)


def double_descent_flag(tables: RunTables, run: str) -> bool | None:
    """events.json's double-descent flag, None when the run has no events."""
    return ((tables.events.get(run) or {}).get("double_descent") or {}).get("double_descent")


def run_label(row: pd.Series) -> str:
    depth = row.get("_depth")
    return f"depth {int(depth)}" if pd.notna(depth) else str(row["run"])


def title(row: pd.Series, tables: RunTables, turning: dict | None) -> str:
    """Depth, double-descent flag and turning-point spread (std of log10(t* + 1) across the layers that turn)."""
    flag = double_descent_flag(tables, str(row["run"]))
    spread = (turning or {}).get("spread")
    parts = [
        run_label(row),
        "DD ?" if flag is None else f"DD {'yes' if flag else 'no'}",
        f"t* spread {spread:.2f}" if spread is not None else "t* spread ?",
    ]
    if turning:
        parts[-1] += f" ({turning['n_layers']}/{turning['n_analysed']} turn)"
    return ", ".join(parts)


def gradient_panel(ax: plt.Axes, tables: RunTables, row: pd.Series, panel: str) -> list[pd.DataFrame]:
    """G_m(t) per hidden layer, turning points and test loss of one run (§11.4)."""
    run = str(row["run"])
    step_axis(ax)
    ax.set_ylabel("RPD gradient $G_m$")
    if (why := divergence(tables, run)) is not None:
        ax.set_title(title(row, tables, None), loc="right", fontsize=6.5)
        note(ax, why)
        return []
    gradients = run_rows(tables.metrics, run, metric="rpd_gradient")
    gradients = (
        gradients
        if {"step", "layer", "value"} <= set(gradients.columns)
        else pd.DataFrame(columns=["step", "layer", "value"])
    )
    gradients = gradients.assign(layer=pd.to_numeric(gradients["layer"], errors="coerce")).dropna(subset=["layer"])
    gradients = gradients.astype({"layer": int})
    drawn, turning = [], None
    if gradients.empty:
        note(ax, f"{run}: no rpd_gradient")
    else:
        layers = sorted(int(layer) for layer in gradients["layer"].unique())
        norm = Normalize(vmin=min(layers), vmax=max(max(layers), min(layers) + 1))
        for layer in layers:
            rows = gradients[gradients["layer"] == layer]
            part = draw_curve(
                ax,
                rows["step"],
                rows["value"],
                panel,
                f"G layer {layer}",
                "step",
                "rpd_gradient",
                run,
                color=LAYER_COLORS(norm(layer)),
                lw=0.9,
            )
            drawn.append(part.assign(step=part["x"], layer=layer))
        turning = turning_point_spread(gradients[["step", "layer", "value"]])
        spread = turning["spread"]
        peaks = pd.DataFrame({"layer": list(turning["turning_steps"]), "step": list(turning["turning_steps"].values())})
        peaks = peaks.merge(gradients[["layer", "step", "value"]], on=["layer", "step"]).sort_values("layer")
        ax.scatter(peaks["step"], peaks["value"], s=12, c=LAYER_COLORS(norm(peaks["layer"])), edgecolors="k", zorder=3)
        drawn.append(
            peaks.rename(columns={"value": "y"}).assign(
                x=peaks["step"],
                panel=panel,
                series="turning point t*",
                x_name="step",
                y_name="rpd_gradient",
                run=run,
                spread=spread,
                double_descent=double_descent_flag(tables, run),
            )
        )
        # a colour bar below the panel (made before the twin axis so both keep one position): no overlap with data
        bar = ax.figure.colorbar(
            ScalarMappable(norm=norm, cmap=LAYER_COLORS), ax=ax, location="bottom", fraction=0.05, pad=0.25, aspect=40
        )
        bar.set_label("hidden layer m", fontsize=6, labelpad=1)
        bar.ax.tick_params(labelsize=6, length=2, pad=1)
        bar.ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_title(title(row, tables, turning), loc="right", fontsize=6.5)
    loss_axis = ax.twinx()
    loss_axis.spines["right"].set_visible(True)
    history = run_rows(tables.history, run)
    if "test_loss" in history.columns:
        part = draw_curve(
            loss_axis,
            history["step"],
            history["test_loss"],
            panel,
            "test_loss",
            "step",
            "test_loss",
            run,
            color="k",
            ls="--",
            lw=1.0,
        )
        drawn.append(part.assign(step=part["x"], axis="right"))
    loss_axis.set_ylabel("test loss (dashed)")
    return drawn


def modes_panel(ax: plt.Axes, tables: RunTables, row: pd.Series, panel: str) -> list[pd.DataFrame]:
    """The fraction of order-preserving neurons of each hidden layer against step (docs/methods.md §19)."""
    run = str(row["run"])
    step_axis(ax)
    ax.set_ylabel("OPM fraction")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(f"OPM fraction, {run_label(row)}", loc="right")
    if (why := divergence(tables, run)) is not None:
        note(ax, why)
        return []
    fractions = run_rows(tables.metrics, run, metric="opm_fraction")
    if fractions.empty or "layer" not in fractions.columns:
        note(ax, f"{run}: no opm_fraction")
        return []
    fractions = fractions.assign(layer=pd.to_numeric(fractions["layer"], errors="coerce")).dropna(subset=["layer"])
    layers = sorted(int(layer) for layer in fractions["layer"].unique())
    norm = Normalize(vmin=min(layers), vmax=max(max(layers), min(layers) + 1))
    drawn = []
    for layer in layers:
        rows = fractions[fractions["layer"] == layer]
        part = draw_curve(
            ax,
            rows["step"],
            rows["value"],
            panel,
            f"OPM fraction layer {layer}",
            "step",
            "opm_fraction",
            run,
            color=LAYER_COLORS(norm(layer)),
            lw=0.9,
        )
        drawn.append(part.assign(step=part["x"], layer=layer))
    return drawn


def draw(tables: RunTables) -> tuple[plt.Figure, pd.DataFrame]:
    """Fig. 9 of the ``depth`` runs (the first 4 by depth): G and OPM-fraction panels per run."""
    runs = ordered_runs(tables)
    extra = f" (first {MAX_GRID_RUNS} of {len(runs)})" if len(runs) > MAX_GRID_RUNS else ""
    fig, axes = panels(4, 2, f"Fig. 9: RPD gradient, neuron modes per layer and double descent{extra}")
    drawn = []
    for index in range(MAX_GRID_RUNS):
        g_at = (index // 2) * 4 + index % 2  # rows 0 and 2: G; the row below each: OPM fractions
        pair = ((axes[g_at], "abcdefgh"[g_at]), (axes[g_at + 2], "abcdefgh"[g_at + 2]))
        if index >= len(runs):
            for ax, _ in pair:
                ax.set_axis_off()
                note(ax, "no run with role 'depth'" if runs.empty else "no further depth run")
            continue
        row = runs.iloc[index]
        drawn += gradient_panel(pair[0][0], tables, row, pair[0][1])
        drawn += modes_panel(pair[1][0], tables, row, pair[1][1])
    return fig, plotted_table(drawn)
