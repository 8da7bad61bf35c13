"""Fig. S3 (beyond the paper): the paper's questions asked of convolutional nets (docs/methods.md §27, issue 25).

From the ``cnn`` runs (``model.arch: cnn`` sweeping ``model.depth``, optionally ``model.width``), read at the final
step, for one width (setting ``width``; default the widest): (a) the RPD gradient G of every analysed layer, one line
per depth (the paper's "standard structure", §6.4: early layers less order-preserving than late ones, i.e. G rising
with the layer); (b) the OPM fraction of every layer (§19); (c) L-map and (d) LP pruning accuracy from every start
layer (§4, §5: where the late layers are redundant, both stay at the network's accuracy from an early start layer).
Against depth, every width: (e) input and (f) weight basin sizes (§7, §8; the paper's claim 4 for MLPs: the input
basin grows and the weight basin shrinks with depth), (g) test accuracy, (h) the first layer's G. Where ``mlp`` runs
are given (an MLP depth sweep, Fig. 3's or 4's), (e)-(h) draw them beside the CNN's, dashed. A conv layer's neurons
are its channels; the analysed layers are the conv layers then the head's hidden layers, so a CNN of depth d has
d + len(head_widths) of them.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd

from netdyn.figures.common import draw_lines, final_against_layer, finish, plotted_table, role_runs, sweep_points
from netdyn.figures.style import note, panels
from netdyn.tables import RunTables, scalars

ROLES = {
    "cnn": "conv nets (model.arch cnn) sweeping model.depth, optionally model.width: (a)-(d) for one width, (e)-(h)",
    "mlp": "optional: MLP runs sweeping model.depth (Fig. 3's or 4's), drawn beside the CNN's in (e)-(h)",
}
SETTINGS = {"width": "the width of the CNN runs drawn in panels (a)-(d) (default: the widest)"}
PER_LAYER = (
    ("rpd_gradient", "a", "RPD gradient G, final step", "analysed layer"),
    ("opm_fraction", "b", "OPM fraction, final step", "analysed layer"),
    ("lmap_acc", "c", "L-map pruning accuracy", "start layer"),
    ("lp_acc", "d", "LP pruning accuracy", "start layer"),
)
AGAINST_DEPTH = (
    ("basin_input", None, "e", "input basin size ε*", True),
    ("basin_weight", None, "f", "weight basin size ε*", True),
    ("test_acc", None, "g", "test accuracy", False),
    ("rpd_gradient", 1, "h", "first layer's RPD gradient G1", False),
)


def chosen_width(runs: pd.DataFrame, width: float | None) -> float | None:
    widths = sorted(runs["model.width"].dropna().unique()) if "model.width" in runs.columns else []
    if width is not None:
        return float(width)
    return float(widths[-1]) if widths else None


def panel_against_depth(
    ax: plt.Axes, scalar: pd.DataFrame, families: dict[str, pd.DataFrame], metric: str, layer, panel: str
) -> pd.DataFrame:
    gaps: list[str] = []
    parts = []
    for family, runs in families.items():
        points = sweep_points(
            scalar, runs, metric, "model.depth", "model.width", gaps, layer=layer, label=f"{family} width {{:g}}"
        )
        parts.append(points.assign(key=[f"{family} {k}" for k in points["key"]]))
    points = (
        pd.concat([p for p in parts if len(p)], ignore_index=True) if any(len(p) for p in parts) else pd.DataFrame()
    )
    drawn = []
    for family, style in (("CNN", {}), ("MLP", {"linestyle": "--"})):
        mine = points[points["series"].str.startswith(family)] if len(points) else points
        drawn.append(draw_lines(ax, mine, panel, "depth", metric, **style))
    plotted = plotted_table(drawn)
    finish(ax, gaps, len(plotted) > 0, "no cnn runs")
    return plotted


def draw(tables: RunTables, width: float | None = None) -> tuple[plt.Figure, pd.DataFrame]:
    """Fig. S3 from the ``cnn`` (and optional ``mlp``) runs; ``width`` picks the CNN width of panels (a)-(d)."""
    fig, axes = panels(2, 4, "Fig. S3  the paper's questions asked of convolutional nets (final step)")
    scalar = scalars(tables)
    cnn = role_runs(tables, "cnn", ("model.depth", "model.width"))
    mlp = role_runs(tables, "mlp", ("model.depth", "model.width"))
    drawn: list[pd.DataFrame] = []
    shown = chosen_width(cnn, width)
    one_width = cnn[cnn["model.width"] == shown] if shown is not None else cnn
    for ax, (metric, panel, label, x_label) in zip(axes[:4], PER_LAYER, strict=True):
        if one_width.empty:
            note(ax, "no cnn runs")
            continue
        drawn += final_against_layer(ax, scalar, one_width, metric, panel)
        ax.set(xlabel=x_label, ylabel=label)
        ax.set_title(f"CNN width {shown:g}" if shown is not None else "", loc="right", fontsize=7)
    families = {"CNN": cnn, **({"MLP": mlp} if len(mlp) else {})}
    for ax, (metric, layer, panel, label, log) in zip(axes[4:], AGAINST_DEPTH, strict=True):
        part = panel_against_depth(ax, scalar, families, metric, layer, panel)
        ax.set(xlabel="depth (conv layers; MLP: hidden layers)", ylabel=label)
        if log and len(part) and (part["y"] > 0).all():
            ax.set_yscale("log")
        drawn.append(part)
    return fig, plotted_table(drawn)
