"""Claim 1: the paper's deep net reaches its reported accuracy (§IV: the 23 x 1024 ReLU BN net trained on the full
60,000-image MNIST reaches 98.6 % test accuracy; report/claims.md, Claim 1)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

from netdyn.claims.common import (
    FULL_DATASETS,
    FULL_N_TRAIN,
    Claim,
    dataset,
    design_role,
    diverged_note,
    is_full_mnist,
    missing,
    model_sizes,
    ok_runs,
    role_tables,
    run_final_values,
    spec,
    training_sizes,
)
from netdyn.claims.paper_scale import PAPER_DEPTH, PAPER_WIDTH, deep_nets, paper_data
from netdyn.claims.stats import (
    INCONCLUSIVE,
    INTERVAL,
    MIN_REPLICATES,
    TOO_FEW_SEEDS,
    Outcome,
    bootstrap,
    combine,
    decide,
)
from netdyn.tables import RunTables

PAPER_ACC = 0.986
ACC_TOLERANCE = 0.005


def check(tables_by_role: Mapping[str, RunTables], context: Mapping[str, Any]) -> Outcome:
    tables = role_tables(tables_by_role, "depth")
    if tables is None:
        return missing("depth")
    runs, diverged = ok_runs(tables)
    runs = runs[(spec(runs, "model.depth") == PAPER_DEPTH) & (spec(runs, "model.width") == PAPER_WIDTH)]
    note = diverged_note(diverged)
    if runs.empty:
        return Outcome(INCONCLUSIVE, "", f"no non-diverged {PAPER_DEPTH}x{PAPER_WIDTH} depth run{note}")
    name = dataset(runs, context)
    n_train = training_sizes(runs, context).min()
    acc = run_final_values(tables, "test_acc").set_index("run")["value"].reindex(runs["run"]).dropna()
    where = f"dataset={name}, n_train={n_train:.0f}"
    if not is_full_mnist(name, context) or not n_train >= FULL_N_TRAIN:
        return Outcome(INCONCLUSIVE, f"test_acc over {len(acc)} run(s); {where}", f"needs full MNIST ({FULL_N_TRAIN})")
    estimate = bootstrap({"runs": acc.to_numpy()}, lambda m: m["runs"])
    return combine([decide("a", estimate, ">=", PAPER_ACC - ACC_TOLERANCE, "test_acc")], note)


def design(runs_by_role: Mapping[str, pd.DataFrame], context: Mapping[str, Any]) -> str | None:
    runs = design_role(runs_by_role, "depth")
    if runs is None:
        return "no depth role"
    depth, width = model_sizes(runs)
    paper = runs[(depth == PAPER_DEPTH) & (width == PAPER_WIDTH)]
    if paper.empty:
        return f"no {PAPER_DEPTH}x{PAPER_WIDTH} run"
    if not paper_data(paper, context):
        return "not full MNIST"
    return TOO_FEW_SEEDS if len(paper) < MIN_REPLICATES else None


CLAIMS = (
    Claim(
        1,
        "23x1024 ReLU DNN reaches 98.6% on MNIST",
        ("depth",),
        f"final test_acc of the depth runs with model.depth = {PAPER_DEPTH} and model.width = {PAPER_WIDTH} "
        f"(mean over seeds, {INTERVAL})",
        f"reproduced if the interval lies at or above {PAPER_ACC} - {ACC_TOLERANCE}; not reproduced if it lies below; "
        f"inconclusive otherwise, with < {MIN_REPLICATES} seeds, or unless the data is full MNIST (dataset name, or "
        f"the single data source, in {list(FULL_DATASETS)}) with >= {FULL_N_TRAIN} training images",
        check,
        deep_nets,
        design,
    ),
)
