"""What every claim reads the same way: the registry entry of a claim, a role's runs and tables, final values, sweep
points, the runs' dataset and training-set sizes, and the events' grokking readings (report/claims.md "Rules shared
by all claims").

A **final value** is a run's metric at its final step (netdyn.tables.final_values); **diverged runs** are left out and
named in the reason; runs that differ only in ``train.seed`` are replicates of one point.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from netdyn.claims.stats import INCONCLUSIVE, Outcome
from netdyn.config import KNOWN_TRAIN_SIZES
from netdyn.tables import RunTables, final_steps, final_values, live_runs, scalars

FULL_DATASETS = ("mnist",)  # dataset names, or the single data source, that mean the full torchvision MNIST
FULL_N_TRAIN = 60_000
MIN_HISTORY_POINTS = 5  # history rows needed before a grokking flag means anything
MIN_TURNING_STEPS = 5  # analysed steps needed before a curve's rise and fall (a turning point) mean anything


class Claim(NamedTuple):
    """One row of the scorecard: what it measures and how it is decided (report/claims.md states the same text).

    ``check(tables_by_role, context)`` gives its verdict from the collected tables; ``scale(runs, context)`` its scale
    label from the non-diverged runs of its first role (an empty table when the role has none); ``design(runs_by_role,
    context)`` says before anything runs why a config's runs cannot settle it, or None when they can.
    """

    number: int
    title: str
    roles: tuple[str, ...]
    quantity: str
    criterion: str
    check: Callable[[Mapping[str, RunTables], Mapping[str, Any]], Outcome]
    scale: Callable[[pd.DataFrame, Mapping[str, Any]], str]
    design: Callable[[Mapping[str, pd.DataFrame], Mapping[str, Any]], str | None]


def role_tables(tables_by_role: Mapping[str, RunTables], role: str) -> RunTables | None:
    """The tables of ``role``, restricted to its runs when the runs table says which runs play it."""
    tables = tables_by_role.get(role)
    if tables is None or tables.runs is None or tables.runs.empty:
        return None
    runs = tables.runs
    if "role" in runs.columns and (runs["role"] == role).any():
        keep = set(runs.loc[runs["role"] == role, "run"])
        frames = {
            field: frame[frame["run"].isin(keep)]
            if isinstance(frame, pd.DataFrame) and "run" in frame.columns
            else frame
            for field, frame in tables._asdict().items()
            if field != "events"
        }
        tables = RunTables(**frames, events={run: value for run, value in tables.events.items() if run in keep})
    return tables


def design_role(runs_by_role: Mapping[str, pd.DataFrame], role: str) -> pd.DataFrame | None:
    """A design's runs of ``role``, None when it has none."""
    runs = runs_by_role.get(role)
    return None if runs is None or runs.empty else runs


def ok_runs(tables: RunTables) -> tuple[pd.DataFrame, list[str]]:
    """Runs that did not diverge, and the ids of those that did (netdyn.tables.live_runs)."""
    live = live_runs(tables.runs)
    return live.copy(), sorted(set(tables.runs["run"]) - set(live["run"])) if "run" in tables.runs.columns else []


def layer_rows(frame: pd.DataFrame, metric: str, layer: int | None) -> pd.DataFrame:
    rows = frame[frame["metric"] == metric]
    layers = pd.to_numeric(rows["layer"], errors="coerce") if "layer" in rows.columns else pd.Series(np.nan, rows.index)
    return rows[layers.isna()] if layer is None else rows[layers == layer]


def bounded(value: Any, bound: Any, bound_value: Any) -> float:
    """A value, or the grid's bound of a missing one (a basin beyond the amplitude grid); NaN when neither exists."""
    value = pd.to_numeric(value, errors="coerce")
    if pd.notna(value):
        return float(value)
    return float(bound_value) if bound in ("lower", "upper") and pd.notna(bound_value) else math.nan


def run_final_steps(tables: RunTables) -> dict[str, int]:
    return final_steps(scalars(tables))


def run_final_values(tables: RunTables, metric: str, layer: int | None = None) -> pd.DataFrame:
    """Each run's ``metric`` at its final step (netdyn.tables.final_values: history fills in network metrics)."""
    return final_values(scalars(tables), metric, layer)


def spec(runs: pd.DataFrame, column: str) -> pd.Series:
    return pd.to_numeric(runs[column], errors="coerce") if column in runs.columns else pd.Series(np.nan, runs.index)


def model_sizes(runs: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    return spec(runs, "model.depth"), spec(runs, "model.width")


def grid(
    tables: RunTables, metric: str, layer: int | None = None, basin: bool = False
) -> tuple[dict[tuple, np.ndarray], list[str]]:
    """Sweep points ``(depth, width) -> final values of its replicates`` and the diverged run ids."""
    runs, diverged = ok_runs(tables)
    values = run_final_values(tables, metric, layer)
    if basin:
        values = values[~values["note"].astype(str).str.startswith("degenerate")]
        values["value"] = [
            bounded(v, b, bv) for v, b, bv in zip(values["value"], values["bound"], values["bound_value"], strict=True)
        ]
    frame = pd.DataFrame({"run": runs["run"], "depth": spec(runs, "model.depth"), "width": spec(runs, "model.width")})
    frame = frame.merge(values[["run", "value"]], on="run").dropna()
    return by_key(frame, ["depth", "width"]), diverged


def by_key(frame: pd.DataFrame, keys: Sequence[str], value: str | Sequence[str] = "value") -> dict[tuple, np.ndarray]:
    """``{key tuple: replicate values}`` (1-D, or 2-D rows of several ``value`` columns)."""
    columns = [value] if isinstance(value, str) else list(value)
    groups = {}
    for key, group in frame.groupby(list(keys), sort=True):
        data = group[columns].to_numpy(dtype=float)
        groups[tuple(float(k) for k in key)] = data[:, 0] if isinstance(value, str) else data
    return groups


def replicates(runs: pd.DataFrame, keys: Sequence[str]) -> int:
    """The fewest runs that share a point (equal ``keys`` columns) in ``runs``."""
    if runs.empty:
        return 0
    return int(runs.groupby([runs[k].astype(str) for k in keys]).size().min()) if keys else len(runs)


def dataset(runs: pd.DataFrame, context: Mapping[str, Any]) -> str | None:
    """The runs' dataset name (the first one), else the context's."""
    if "dataset" in runs.columns and runs["dataset"].notna().any():
        return str(runs["dataset"].dropna().iloc[0])
    names = context.get("datasets") or ([context["dataset"]] if context.get("dataset") else [])
    return str(names[0]) if len(names) == 1 else None


def single_source(context: Mapping[str, Any]) -> str | None:
    sources = context.get("sources") or []
    return str(sources[0]) if len(sources) == 1 else None


def is_full_mnist(name: str | None, context: Mapping[str, Any]) -> bool:
    return name in FULL_DATASETS or single_source(context) in FULL_DATASETS


def training_sizes(runs: pd.DataFrame, context: Mapping[str, Any]) -> pd.Series:
    """train.n_train per run; a null (the whole training set) becomes the dataset's full size, or NaN if unknown."""
    full = context.get("n_train")
    if full is None:
        name = dataset(runs, context)
        full = KNOWN_TRAIN_SIZES.get(name, KNOWN_TRAIN_SIZES.get(single_source(context) or "", math.nan))
        full = FULL_N_TRAIN if math.isnan(full) and is_full_mnist(name, context) else full
    return spec(runs, "train.n_train").fillna(float(full))


def history_points(tables: RunTables, run: str) -> int:
    history = tables.history
    return 0 if history is None or history.empty else int((history["run"] == run).sum())


def grokked(tables: RunTables, run: str, key: str = "grokking") -> bool | None:
    """The run's grokking flag from events.json, or None (no events, no reading, history too short)."""
    reading = (tables.events.get(run) or {}).get(key)
    if not reading or "grokked" not in reading:
        return None
    return bool(reading["grokked"]) if history_points(tables, run) >= MIN_HISTORY_POINTS else None


def bn_lag(tables: RunTables, run: str) -> float:
    """The run's bn_lag_steps (events.json bn_grokking), NaN when there is none."""
    reading = (tables.events.get(run) or {}).get("bn_grokking") or {}
    lag = reading.get("bn_lag_steps")
    return float(lag) if lag is not None and history_points(tables, run) >= MIN_HISTORY_POINTS else math.nan


def missing(role: str) -> Outcome:
    return Outcome(INCONCLUSIVE, "", f"role '{role}' missing or has no runs")


def diverged_note(diverged: Sequence[str]) -> str:
    return f" [left out, diverged: {', '.join(diverged)}]" if diverged else ""
