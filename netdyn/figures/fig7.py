"""Figure 7: grokking in eval-mode BatchNorm only — 2-D projections of a deep BN net (methods.md §13, §10, §11.2).

One run of the ``depth`` role (setting ``depth``; default 23, the paper's net, where present, else the deepest that
did not diverge), at its before/after checkpoints: those of the BatchNorm grokking reading (events.json
``bn_grokking``: the last step of the eval-mode wait at chance and the first step ≥ 2·its onset, docs/methods.md
§20), or of the eval-mode grokking reading (§10) for a run without one.
(a)-(d) BN in eval mode (running statistics): (a) train before, (b) train after, (c) test before, (d) test after.
(e)-(h) BN in train mode at test time (§11.2 primary reading): (e) test before, (f) test after, (g) train before,
(h) train after. (i) test accuracy in eval mode (``test_acc``) and in train mode (``test_acc_bntrain``) against
step, with the train-mode train accuracy (dashed): the gap between them is the "grokking in eval mode only" claim.
Digits are those in projection.csv.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import pandas as pd

from netdyn.figures.common import (
    divergence,
    grokking_steps,
    history_curves,
    note_all,
    panel_run,
    plotted_table,
    projection_panel,
    run_rows,
    share_pairs,
    step_axis,
)
from netdyn.figures.style import note, panels
from netdyn.tables import RunTables

ROLES = {
    "depth": "deep BatchNorm ReLU nets of one experiment sweeping model.depth (methods.md §3 Fig. 3(d), §11.2), "
    "with projections in both bn_modes at their checkpoints; Fig. 7 draws one (setting depth, default 23, else the "
    "deepest that did not diverge)",
}
SETTINGS = {"depth": "the depth of the run drawn", "digits": "the digits projected (default: all in the table)"}
# (panel, bn_mode, split, when), in the paper's order
PROJECTIONS = [
    ("a", "eval", "train", "before"),
    ("b", "eval", "train", "after"),
    ("c", "eval", "test", "before"),
    ("d", "eval", "test", "after"),
    ("e", "train", "test", "before"),
    ("f", "train", "test", "after"),
    ("g", "train", "train", "before"),
    ("h", "train", "train", "after"),
]


def has_batchnorm(tables: RunTables, run: str) -> bool:
    row = tables.runs[tables.runs["run"] == run]
    return "model.batchnorm" not in row.columns or bool(row["model.batchnorm"].fillna(True).iloc[0])


def accuracy_panel(ax: plt.Axes, tables: RunTables, run: str) -> list[pd.DataFrame]:
    """(i) test accuracy with BN in eval mode and in train mode against step (§11.2)."""
    drawn = history_curves(
        ax,
        tables,
        run,
        "i",
        {
            "test_acc": {"color": "C0"},
            "test_acc_bntrain": {"color": "C1"},
            "train_acc_bntrain": {"color": "C1", "ls": "--"},
        },
    )
    if not any(len(part) and part["series"].iloc[0] == "test_acc_bntrain" for part in drawn):
        note(ax, "no test_acc_bntrain (model without BatchNorm?)")
    step_axis(ax)
    ax.set_ylabel("test accuracy")
    ax.set_ylim(-0.02, 1.02)
    if any(len(part) for part in drawn):
        ax.legend(loc="best")
    return drawn


def draw(
    tables: RunTables, *, run: str | None = None, digits: Sequence[int] | None = None, depth: int | None = None
) -> tuple[plt.Figure, pd.DataFrame]:
    """Fig. 7 of one ``depth`` run (``run``, else the one of depth ``depth``, default 23 where present, else the
    deepest that did not diverge); ``digits`` default: all in projection.csv."""
    reason = ""
    notes: list[str] = []
    if run is None:
        run, notes = panel_run(tables, "depth", depth)
        reason = "; ".join(notes) if run is None else ""
    fig, axes = panels(3, 4, f"Fig. 7: BatchNorm eval vs train mode, {run}" if run else "Fig. 7")
    for ax in axes[9:]:
        fig.delaxes(ax)  # 9 panels on a 3 x 4 grid: rows = eval mode, train mode, accuracy
    axes = axes[:9]
    if run is None or (reason := divergence(tables, run) or reason):
        note_all(axes, reason)
        return fig, plotted_table([])
    drawn = accuracy_panel(axes[8], tables, run)
    if notes:
        note(axes[8], "; ".join(notes))
    checkpoints = grokking_steps(tables, run, "bn_grokking") or grokking_steps(tables, run)
    if checkpoints is None:
        note_all(axes[:8], f"{run}: no grokking checkpoints (events.json)")
        return fig, plotted_table(drawn)
    no_train_mode = run_rows(tables.projection, run, bn_mode="train").empty
    for ax, (panel, bn_mode, split, when) in zip(axes, PROJECTIONS, strict=False):
        if bn_mode == "train" and no_train_mode:
            why = "no BatchNorm" if not has_batchnorm(tables, run) else "no projection rows"
            note(ax, f"{run}: {why} in bn_mode train")
            continue
        step = checkpoints[0] if when == "before" else checkpoints[1]
        drawn.append(projection_panel(ax, tables, run, panel, split, bn_mode, step, when, digits))
        ax.set_title(f"BN {bn_mode}: {ax.get_title()}")
    share_pairs([(axes[0], axes[1]), (axes[2], axes[3])])
    share_pairs([(axes[6], axes[7]), (axes[4], axes[5])])  # train then test, as share_pairs expects
    return fig, plotted_table(drawn)
