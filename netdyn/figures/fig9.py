"""Figure 9: RPD gradient of every hidden layer over training, against double descent (methods.md §13, §11.4, §6.3).

One panel per ``depth`` run (up to 4, by depth): G_m(t) = ``rpd_gradient`` of hidden layer m against step, one
line per layer coloured by its index, each layer's turning point t*_m = argmax_t G_m(t) marked, and the test loss
on a twin axis (dashed black). The title gives events.json's double-descent flag and the turning-point spread,
the std of log10(t*_m + 1) across layers (``netdyn.dynamics.turning_point_spread``): small in a run with
double descent ("synchronous" layers), larger without.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.ticker import MaxNLocator

from netdyn.collection import RunTables
from netdyn.dynamics import turning_point_spread
from netdyn.figures.common import divergence, draw_curve, role_runs, run_panels, run_rows, step_axis
from netdyn.figures.style import note

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


def title(row: pd.Series, tables: RunTables, spread: float | None) -> str:
    """Depth, double-descent flag and turning-point spread (std of log10(t* + 1) across layers)."""
    depth = row.get("_depth")
    flag = double_descent_flag(tables, str(row["run"]))
    parts = [
        f"depth {int(depth)}" if pd.notna(depth) else str(row["run"]),
        "DD ?" if flag is None else f"DD {'yes' if flag else 'no'}",
        f"t* spread {spread:.2f}" if spread is not None else "t* spread ?",
    ]
    return ", ".join(parts)


def gradient_panel(ax: plt.Axes, tables: RunTables, row: pd.Series, panel: str) -> list[pd.DataFrame]:
    """G_m(t) per hidden layer, turning points and test loss of one run (§11.4)."""
    run = str(row["run"])
    step_axis(ax)
    ax.set_ylabel("RPD gradient $G_m$")
    if (why := divergence(tables, run)) is not None:
        ax.set_title(title(row, tables, None), loc="right")
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
    drawn, spread = [], None
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
    ax.set_title(title(row, tables, spread), loc="right")
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


def draw(tables: RunTables) -> tuple[plt.Figure, pd.DataFrame]:
    """Fig. 9 of the ``depth`` runs (the first 4 by depth)."""
    return run_panels(
        "Fig. 9: RPD gradient per layer and double descent",
        ordered_runs(tables),
        ("no run with role 'depth'", "no further depth run"),
        lambda ax, run, letter: gradient_panel(ax, tables, run, letter),
    )
