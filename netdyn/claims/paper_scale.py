"""The scale label of a claim's verdict (report/claims.md "Scale"): ``paper`` when the claim's runs use the paper's
data (full MNIST, 60,000 training images; the Omnigrok 1,000-image subset for claim 6), model sizes and optimizer
(methods.md §3, §12); ``paper-size`` when they use the paper's model and training-set sizes and optimizer on other
data; else ``reduced``. Rows that ask the paper's questions of networks the paper never trained are ``beyond paper``.

The paper's sizes live here, beside the rules the claim modules share; each claim's module says which rule it takes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

from netdyn.claims.common import FULL_N_TRAIN, dataset, is_full_mnist, model_sizes, training_sizes

PAPER, PAPER_SIZE, REDUCED, BEYOND_PAPER = "paper", "paper-size", "reduced", "beyond paper"

PAPER_DEPTH, PAPER_WIDTH = 23, 1024  # the deep BN ReLU net of Figs. 3, 7, 8, 9
PAPER_MIN_WIDTH, PAPER_WIDE = 128, 1024  # Fig. 4's widths run from 128 to 1280
PAPER_SHALLOW_WIDTH = 2048  # Fig. 2's 784-2048-10 nets


def label(paper_sizes: bool, paper_data: bool) -> str:
    return (PAPER if paper_data else PAPER_SIZE) if paper_sizes else REDUCED


def full_training_sets(runs: pd.DataFrame, context: Mapping[str, Any], n_train: int = FULL_N_TRAIN) -> bool:
    return bool((training_sizes(runs, context) >= n_train).all())


def paper_data(runs: pd.DataFrame, context: Mapping[str, Any], n_train: int = FULL_N_TRAIN) -> bool:
    return is_full_mnist(dataset(runs, context), context) and full_training_sets(runs, context, n_train)


def optimizer(runs: pd.DataFrame, name: str) -> bool:
    return "train.optimizer" in runs.columns and bool((runs["train.optimizer"] == name).all())


def deep_nets(runs: pd.DataFrame, context: Mapping[str, Any], also_depth: int | None = None) -> str:
    """The deep 1024-wide BN nets of Figs. 3, 7, 8, 9 (one of them 23 layers deep; ``also_depth`` one more depth)."""
    if runs.empty:
        return REDUCED
    depth, width = model_sizes(runs)
    sizes = full_training_sets(runs, context) and optimizer(runs, "adam")
    sizes &= bool((width == PAPER_WIDTH).all()) and (depth == PAPER_DEPTH).any()
    if also_depth is not None:
        sizes &= (depth == also_depth).any()
    return label(sizes, is_full_mnist(dataset(runs, context), context))


def sweep_nets(runs: pd.DataFrame, context: Mapping[str, Any]) -> str:
    """Fig. 4's depth x width sweep: widths from PAPER_MIN_WIDTH reaching PAPER_WIDE."""
    if runs.empty:
        return REDUCED
    _, width = model_sizes(runs)
    sizes = full_training_sets(runs, context) and optimizer(runs, "adam")
    sizes &= bool((width >= PAPER_MIN_WIDTH).all()) and width.max() >= PAPER_WIDE
    return label(sizes, is_full_mnist(dataset(runs, context), context))


def beyond_paper(runs: pd.DataFrame, context: Mapping[str, Any]) -> str:
    return BEYOND_PAPER
