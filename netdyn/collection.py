"""Load the tables of many runs at once: what the figures, the claims scorecard and ``aggregate`` read.

``load_runs(run_dirs)`` returns one ``RunTables`` whose frames concatenate every run's files (each with a
``run`` column), plus ``runs``: one row per run with its status and its spec flattened to dotted columns
(``model.depth``, ``train.lr``, ...). Missing files (an analysis that was not requested, a diverged run) give
empty frames or missing rows, never made-up values.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

import pandas as pd

CURVE_FILES = ("rpd", "basins", "geometry", "projection")


class RunTables(NamedTuple):
    runs: pd.DataFrame
    history: pd.DataFrame
    metrics: pd.DataFrame
    rpd: pd.DataFrame
    basins: pd.DataFrame
    geometry: pd.DataFrame
    projection: pd.DataFrame
    events: dict[str, dict[str, Any]]


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
    curves: dict[str, list] = {name: [] for name in CURVE_FILES}
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
                **flatten(spec),
            }
        )
        history.append(_read(folder / "history.csv", run))
        metrics.append(_read(folder / "metrics.csv", run))
        for name in CURVE_FILES:
            curves[name].append(_read(folder / f"{name}.csv", run))
        if (folder / "events.json").exists():
            events[run] = json.loads((folder / "events.json").read_text())
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
