"""Figure 8: grokking under different batch sizes and learning rates (methods.md §13, §11.3, §10).

One panel per ``conditions`` run (up to 4, by run id), titled with its batch size and learning rate and the
BatchNorm lag of events.json: eval-mode train and test accuracy and the train-mode-BatchNorm train accuracy (dashed;
what the training batches reach while the eval-mode test accuracy may still wait) against step (history.csv), and
an inset with the 2-D projection (split test, BN eval mode) of one
digit before (grey) and after (colour) grokking, at the events.json checkpoints. The paper's caption says the
insets show digit 0 and its text says 5 (methods.md §15); ``digit`` picks one, default 5.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd

from netdyn.figures.common import (
    DIGIT_COLORS,
    divergence,
    grokking_steps,
    history_curves,
    projection_points,
    projection_rows,
    role_runs,
    run_panels,
    step_axis,
    step_label,
)
from netdyn.figures.style import note
from netdyn.tables import RunTables

ROLES = {
    "conditions": "runs of one deep BatchNorm net that differ only in train.batch_size and/or train.lr (methods.md "
    "§3 Fig. 8, §11.3: e.g. base, larger batch, smaller batch, larger lr), with test projections at their checkpoints",
}
# Mid-height, right of centre: after memorization train accuracy runs above it and test accuracy below it until
# grokking; a translucent background keeps any curve behind it visible.
INSET = (0.42, 0.22, 0.42, 0.44)


def condition_title(row: pd.Series, lag: object = None) -> str:
    """The hyperparameters the conditions differ in (batch size, learning rate), and the BN lag when known."""
    batch, lr = row.get("train.batch_size"), row.get("train.lr")
    parts = [f"batch {int(batch)}" if pd.notna(batch) else "batch ?", f"lr {lr:g}" if pd.notna(lr) else "lr ?"]
    if lag is not None:
        parts.append(f"BN lag {int(lag)} steps")
    return ", ".join(parts)


def inset_projection(ax: plt.Axes, tables: RunTables, run: str, panel: str, digit: int) -> list[pd.DataFrame]:
    """Inset: one digit's test projection (BN eval mode) before (grey) and after (colour) grokking (§10). A run
    without grokking checkpoints or projections (a config that runs no projection stage) gets no inset: an empty box
    would hide the curves it sits on."""
    checkpoints = grokking_steps(tables, run)
    if checkpoints is None:
        return []
    found = []
    for when, requested, color in (("before", checkpoints[0], "0.6"), ("after", checkpoints[1], DIGIT_COLORS(digit))):
        points, used = projection_points(tables, run, "test", "eval", requested, [digit])
        if not points.empty:
            found.append((when, requested, color, points, used))
    if not found:
        return []
    inset = ax.inset_axes(INSET)
    inset.set_xticks([])
    inset.set_yticks([])
    inset.patch.set_alpha(0.8)
    for spine in inset.spines.values():
        spine.set_visible(True)
        spine.set_color("0.6")
    drawn = []
    for when, requested, color, points, used in found:
        inset.scatter(points["h1"], points["h2"], s=2, color=color, alpha=0.7, linewidths=0)
        series = f"inset digit {digit} {when} ({step_label(used, requested)})"
        drawn.append(projection_rows(points, panel, series, requested, when))
    inset.set_title(f"test digit {digit}: before (grey), after", fontsize=5, pad=2)
    return drawn


def condition_panel(ax: plt.Axes, tables: RunTables, row: pd.Series, panel: str, digit: int) -> list[pd.DataFrame]:
    """One condition: train/test accuracy vs step with the projection inset."""
    run = str(row["run"])
    ax.set_title(condition_title(row, ((tables.events.get(run) or {}).get("bn_grokking") or {}).get("bn_lag_steps")))
    step_axis(ax)
    ax.set_ylabel("accuracy")
    ax.set_ylim(-0.02, 1.02)
    if (why := divergence(tables, run)) is not None:
        note(ax, why)
        return []
    lines = {
        "train_acc": {"color": "C3"},
        "test_acc": {"color": "C2"},
        "train_acc_bntrain": {"color": "C3", "ls": "--"},
    }
    drawn = history_curves(ax, tables, run, panel, lines)
    if any(len(part) for part in drawn):
        ax.legend(loc="upper left")
    return drawn + inset_projection(ax, tables, run, panel, digit)


def draw(tables: RunTables, *, digit: int = 5) -> tuple[plt.Figure, pd.DataFrame]:
    """Fig. 8 of the ``conditions`` runs (first 4 by run id); ``digit`` is the inset's digit."""
    return run_panels(
        "Fig. 8: batch size and learning rate",
        role_runs(tables, "conditions"),
        ("no run with role 'conditions'", "no further condition run"),
        lambda ax, run, letter: condition_panel(ax, tables, run, letter, digit),
    )
