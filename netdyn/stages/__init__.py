"""The analysis stages: what each one reads, writes and is configured by, in one torch-free registry.

Every analysis of a run is a *stage*: a module ``netdyn/stages/<name>.py`` whose ``run(run, sources, steps,
settings, log)`` walks the run's analysed snapshots and returns its tables (docs/formats.md), keyed as
``Stage.tables`` names them plus ``metrics`` (the long metric part that ``collect`` merges) where
``Stage.metrics`` is set. The workflow (rules/common.smk, rules/analysis.smk), ``netdyn.analyze``
(netdyn/api.py), the config (which analyses exist, which share activation dumps) and the multi-run reader
(netdyn/tables.py) all read this registry instead of keeping their own lists. docs/adding-an-analysis.md says
how to add one.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from typing import Any, NamedTuple


class Stage(NamedTuple):
    name: str
    tables: tuple[str, ...]  # per-run tables besides the metric part: results/runs/{run}/{table}.csv
    metrics: bool  # writes results/runs/{run}/parts/{name}.csv, merged into metrics.csv by collect
    settings: tuple[str, ...]  # the run's analysis settings it reads (docs/config.md, section analysis)
    reads_fields: bool = False  # reads the training analysis fields, shared through activation dumps
    reads_history: bool = False  # reads the run's history.csv and run.json
    uses_gpu: bool = True
    summary: str = ""


STAGES: dict[str, Stage] = {
    stage.name: stage
    for stage in (
        Stage(
            "rpd",
            tables=("rpd", "neurons"),
            metrics=True,
            settings=("samples", "rpd_bins", "opm_alpha", "opm_min_score"),
            reads_fields=True,
            summary="RPD curves and gradients of every hidden layer, each neuron's mode (methods.md §6, §19)",
        ),
        Stage(
            "pruning",
            tables=(),
            metrics=True,
            settings=("lp_train_samples", "test_samples", "lp_features"),
            summary="LP and L-map pruning accuracy from every start layer (methods.md §4, §5, §22)",
        ),
        Stage(
            "basins",
            tables=("basins",),
            metrics=True,
            settings=(
                "samples",
                "input_amplitudes",
                "weight_amplitudes",
                "input_repeats",
                "weight_draws",
                "weight_noise",
                "tracked_input_amplitudes",
                "tracked_input_multiples",
                "basin_fraction",
                "seed",
            ),
            summary="input- and weight-space attraction basins (methods.md §7, §8)",
        ),
        Stage(
            "geometry",
            tables=("geometry",),
            metrics=True,
            settings=("samples", "geometry_digit", "geometry_first"),
            reads_fields=True,
            uses_gpu=False,
            summary="cosine distances to class centres, centre similarity (methods.md §9)",
        ),
        Stage(
            "projection",
            tables=("projection",),
            metrics=False,
            settings=("projection_steps", "projection_digits", "projection_per_digit"),
            reads_history=True,
            summary="2-D SVD-bottleneck coordinates of chosen digits (methods.md §10)",
        ),
        Stage(
            "bn_modes",
            tables=(),
            metrics=True,
            settings=("test_samples",),
            summary="test accuracy with last-batch BatchNorm statistics (methods.md §11.2)",
        ),
        Stage(
            "hessian",
            tables=("hessian",),
            metrics=True,
            settings=(
                "samples",
                "hessian_samples",
                "hessian_bn_mode",
                "hessian_top_k",
                "hessian_iterations",
                "hessian_tol",
                "hessian_probes",
                "hessian_block",
                "hessian_trace_tol",
            ),
            summary="the training loss's top Hessian eigenvalues and trace (methods.md §23)",
        ),
        Stage(
            "collapse",
            tables=(),
            metrics=True,
            settings=("samples",),
            reads_fields=True,
            uses_gpu=False,
            summary="neural collapse NC1-NC4 of every hidden layer (methods.md §24)",
        ),
        Stage(
            "cka",
            tables=("cka",),
            metrics=True,
            settings=("samples", "cka_debiased"),
            reads_fields=True,
            uses_gpu=False,
            summary="linear CKA between layers and against each layer's last state (methods.md §25)",
        ),
    )
}
ANALYSES: tuple[str, ...] = tuple(STAGES)
# The paper's analyses run by default; the diagnostics beyond it (issue 15) only where a config asks for them.
DEFAULT_ANALYSES: tuple[str, ...] = ("rpd", "pruning", "basins", "geometry", "projection", "bn_modes")
RUN_TABLES: tuple[str, ...] = tuple(table for stage in STAGES.values() for table in stage.tables)


class Sources(NamedTuple):
    """The files a stage reads for one run (the rule's inputs)."""

    snapshots: str | os.PathLike
    data: str | os.PathLike
    train_spec: dict[str, Any]
    activations: str | os.PathLike | None = None  # the run's dumps, where it has them
    history: str | os.PathLike | None = None
    run_json: str | os.PathLike | None = None


def runner(name: str) -> Callable[..., dict[str, Any]]:
    """The ``run`` function of stage ``name`` (imports its module, and torch with it)."""
    if name not in STAGES:
        raise ValueError(f"analysis {name!r}: unknown; choose from {list(STAGES)}")
    return importlib.import_module(f"netdyn.stages.{name}").run


def outputs(name: str) -> list[str]:
    """The keys of the tables stage ``name`` returns (and its rule's outputs are named by)."""
    stage = STAGES[name]
    return [*stage.tables, *(["metrics"] if stage.metrics else [])]
