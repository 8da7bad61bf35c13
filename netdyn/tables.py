"""Load the tables of many runs at once: what the figures, the claims scorecard and ``collect`` read.

``load_runs(run_dirs)`` returns one ``RunTables`` whose frames concatenate every run's files (each with a
``run`` column): ``history``, ``metrics``, one frame per stage table of the registry (netdyn.stages.RUN_TABLES:
``rpd``, ``neurons``, ``basins``, ...), ``events``, and ``runs``: one row per run with its status, the device it
trained on and its spec flattened to dotted columns (``model.depth``, ``train.lr``, ...). A run is ``diverged``
when its run.json or its events.json says so, for every reader alike. Missing files (an analysis that was not
requested, a diverged run) give empty frames or missing rows, never made-up values.

``scalars``, ``final_steps`` and ``final_values`` are the one reader of a run's final values that the figures and
the scorecard share.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from netdyn.metrics import METRIC_COLUMNS
from netdyn.stages import RUN_TABLES

RunTables = NamedTuple(
    "RunTables",
    [
        ("runs", pd.DataFrame),
        ("history", pd.DataFrame),
        ("metrics", pd.DataFrame),
        *[(name, pd.DataFrame) for name in RUN_TABLES],
        ("events", dict[str, dict[str, Any]]),
    ],
)
SCALAR_COLUMNS = list(METRIC_COLUMNS)


def make_tables(events: dict[str, dict[str, Any]] | None = None, **frames: pd.DataFrame) -> RunTables:
    """A ``RunTables`` of the given frames, every other frame empty (for tables built in memory, e.g. in tests)."""
    unknown = sorted(set(frames) - set(RunTables._fields))
    if unknown:
        raise TypeError(f"RunTables has no table {unknown}; its tables are {list(RunTables._fields)}")
    return RunTables(
        **{name: frames.get(name, pd.DataFrame()) for name in RunTables._fields if name != "events"},
        events=events or {},
    )


def flatten(spec: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"model": {"depth": 2}}`` -> ``{"model.depth": 2}``; lists become JSON text."""
    flat: dict[str, Any] = {}
    for key, value in spec.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = json.dumps(value) if isinstance(value, list) else value
    return flat


def _read(path: Path, run: str) -> pd.DataFrame | None:
    if not path.exists():
        return None
    frame = pd.read_csv(path)
    if "run" not in frame.columns:
        frame.insert(0, "run", run)
    return frame


def _concat(frames: list[pd.DataFrame | None]) -> pd.DataFrame:
    present = [f for f in frames if f is not None and len(f)]
    return pd.concat(present, ignore_index=True) if present else pd.DataFrame()


def load_runs(run_dirs: Iterable[str | os.PathLike], roles: Mapping[str, str] | None = None) -> RunTables:
    """Tables of the runs whose folders (``results/runs/{run}``) are given; ``roles`` maps run id -> role."""
    rows, history, metrics, events = [], [], [], {}
    curves: dict[str, list] = {name: [] for name in RUN_TABLES}
    for folder in map(Path, run_dirs):
        record = json.loads((folder / "run.json").read_text())
        run = record["run"]
        spec = {k: v for k, v in record["spec"].items() if k in ("dataset", "model", "train")}
        rows.append(
            {
                "run": run,
                "experiment": record["spec"]["experiment"],
                "role": (roles or {}).get(run, ""),
                "status": record["status"],
                "diverged_at": record["diverged_at"],
                "device": record.get("device"),  # the device the run trained on (train.device is the request)
                **flatten(spec),
            }
        )
        history.append(_read(folder / "history.csv", run))
        metrics.append(_read(folder / "metrics.csv", run))
        for name in RUN_TABLES:
            curves[name].append(_read(folder / f"{name}.csv", run))
        if (folder / "events.json").exists():
            events[run] = json.loads((folder / "events.json").read_text())
            if events[run].get("status") == "diverged":  # diverged for every reader, whichever file says so
                row = rows[-1]
                row["status"] = "diverged"
                if row["diverged_at"] is None:
                    row["diverged_at"] = events[run].get("diverged_at")
    return RunTables(
        runs=pd.DataFrame(rows),
        history=_concat(history),
        metrics=_concat(metrics),
        events=events,
        **{name: _concat(frames) for name, frames in curves.items()},
    )


def experiment_table(tables: RunTables) -> pd.DataFrame:
    """Every metric of every run (long format) with the run's status and settings as extra columns."""
    if tables.metrics.empty:
        return tables.runs
    return tables.metrics.merge(tables.runs, on="run", how="left")


def live_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """The rows of ``runs`` that did not diverge."""
    if "status" not in runs.columns:
        return runs
    return runs[runs["status"] != "diverged"]


def scalars(tables: RunTables) -> pd.DataFrame:
    """Every scalar value: ``metrics`` rows plus the ``history`` rows that metrics lacks (before ``collect`` ran)."""
    metrics = tables.metrics.reindex(columns=SCALAR_COLUMNS)
    history = tables.history
    if not history.empty:
        value_columns = [c for c in history.columns if c not in ("run", "step", "epoch", "wall_time")]
        melted = history.melt(id_vars=["run", "step"], value_vars=value_columns, var_name="metric")
        melted = melted.dropna(subset=["value"]).assign(layer=np.nan, note="", bound="none", bound_value=np.nan)
        metrics = pd.concat([metrics, melted.reindex(columns=SCALAR_COLUMNS)], ignore_index=True)
    metrics = metrics.drop_duplicates(subset=["run", "step", "metric", "layer"], keep="first")
    metrics["bound"] = metrics["bound"].fillna("none")
    metrics["note"] = metrics["note"].fillna("")
    return metrics.astype({"step": float, "layer": float, "value": float, "bound_value": float})


def final_steps(scalar: pd.DataFrame) -> dict[str, int]:
    """run -> the largest step present in its metrics or history (the final analysed step)."""
    if scalar.empty:
        return {}
    return {run: int(step) for run, step in scalar.groupby("run")["step"].max().items()}


def final_values(scalar: pd.DataFrame, metric: str, layer: int | None = None) -> pd.DataFrame:
    """``metric`` (at ``layer``; None = network level) at each run's final step, where it has it: the
    :data:`SCALAR_COLUMNS` rows, one per run."""
    finals = final_steps(scalar)
    rows = scalar[scalar["metric"] == metric]
    rows = rows[rows["layer"].isna()] if layer is None else rows[rows["layer"] == layer]
    rows = rows[rows["step"] == rows["run"].map(finals)]
    return rows.drop_duplicates("run", keep="first").reset_index(drop=True)
