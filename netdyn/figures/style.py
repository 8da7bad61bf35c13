"""The shared look of every figure, and how a figure and its numbers are saved."""

from __future__ import annotations

import os

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from netdyn.atomic import atomic_path, write_csv  # noqa: E402

PANEL_SIZE = (3.2, 2.6)  # inches per panel: readable at paper size
RC = {
    "font.size": 8,
    "axes.titlesize": 8,
    "axes.labelsize": 8,
    "legend.fontsize": 6.5,
    "xtick.labelsize": 7,
    "ytick.labelsize": 7,
    "lines.linewidth": 1.2,
    "lines.markersize": 3,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "figure.dpi": 150,
    "savefig.dpi": 150,
}
plt.rcParams.update(RC)


def panels(rows: int, cols: int, title: str) -> tuple[plt.Figure, list[plt.Axes]]:
    """A figure of ``rows x cols`` panels labelled (a), (b), ... in reading order."""
    fig, axes = plt.subplots(rows, cols, figsize=(PANEL_SIZE[0] * cols, PANEL_SIZE[1] * rows), squeeze=False)
    flat = list(axes.flat)
    for index, ax in enumerate(flat):
        ax.set_title(f"({chr(ord('a') + index)})", loc="left", fontweight="bold")
    fig.suptitle(title, fontsize=9)
    return fig, flat


def note(ax: plt.Axes, text: str) -> None:
    """Write a note in the panel (a gap's reason: a diverged or missing run), never a made-up value."""
    ax.text(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center", fontsize=7, color="0.4", wrap=True)


def save(
    fig: plt.Figure, plotted: pd.DataFrame, png: str | os.PathLike, pdf: str | os.PathLike, csv: str | os.PathLike
) -> None:
    """Write the figure as PNG and PDF and the plotted numbers as CSV, each atomically."""
    fig.tight_layout()
    for path, fmt in ((png, "png"), (pdf, "pdf")):
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=fmt)
    write_csv(csv, plotted)
    plt.close(fig)
