"""The long metrics table of a run, and ``collect``: a run's metrics.csv and events.json (methods.md §10, §11).

Metric tables are long: ``run, step, metric, layer, value, note, bound, bound_value`` (``layer`` empty for
network-level metrics, ``note`` says why a value is missing, e.g. a basin beyond the amplitude grid, and ``bound``,
``bound_value`` what the grid still says about it). ``collect`` merges the training
history and every analysis part of one run and detects its training events (netdyn.events). Nothing here
imports torch: the ``collect`` job, one per experiment, starts in about a second.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from netdyn.events import events
from netdyn.records import BN_TRAIN_METRICS, SNAPSHOT_METRICS

METRIC_COLUMNS = ["run", "step", "metric", "layer", "value", "note", "bound", "bound_value"]


def metric_row(
    run: str,
    step: int,
    metric: str,
    value: float,
    layer: int | None = None,
    note: str = "",
    bound: str = "none",
    bound_value: float = math.nan,
) -> dict:
    """One metric value; ``bound`` says whether a missing ``value`` is known to lie above ``bound_value``
    (``lower``: the grid's top is a lower bound, e.g. a basin beyond the amplitude grid), below it (``upper``), or
    neither (``none``)."""
    return {
        "run": run,
        "step": step,
        "metric": metric,
        "layer": layer,
        "value": value,
        "note": note,
        "bound": bound,
        "bound_value": bound_value,
    }


def metric_frame(rows: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    frame = pd.DataFrame(list(rows), columns=METRIC_COLUMNS)
    frame["layer"] = frame["layer"].astype("Int64")
    return frame


def curve_table(frames: Sequence[pd.DataFrame], columns: Sequence[str]) -> pd.DataFrame:
    """The per-step frames as one table with ``columns``; an empty table with them when there are none."""
    return (
        pd.concat(frames, ignore_index=True).reindex(columns=list(columns))
        if frames
        else pd.DataFrame(columns=list(columns))
    )


def history_metrics(run: str, history: pd.DataFrame) -> list[dict]:
    """The history's measurements as metric rows (the train-mode ones only where BatchNorm gives them)."""
    rows = []
    for record in history.to_dict("records"):
        for metric in SNAPSHOT_METRICS:
            value = record.get(metric, math.nan)
            if metric in BN_TRAIN_METRICS and (value is None or pd.isna(value)):
                continue  # only models with BatchNorm have them (and histories written before they existed)
            rows.append(metric_row(run, int(record["step"]), metric, float(value)))
    return rows


def collect(
    run: str,
    history_path: str | os.PathLike,
    run_json_path: str | os.PathLike,
    part_paths: Sequence[str | os.PathLike],
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The run's long metrics table (history plus every analysis part) and its events (methods.md §10, §11)."""
    history = pd.read_csv(history_path)
    record = json.loads(Path(run_json_path).read_text())
    parts = [pd.read_csv(path) for path in part_paths]
    frames = [metric_frame(history_metrics(run, history)), *[metric_frame(part.to_dict("records")) for part in parts]]
    metrics = pd.concat([f for f in frames if len(f)], ignore_index=True) if any(len(f) for f in frames) else frames[0]
    metrics = metrics.sort_values(["step", "metric", "layer"], kind="stable", ignore_index=True)
    metrics["note"] = metrics["note"].fillna("")
    metrics["bound"] = metrics["bound"].fillna("none")
    classes = record["spec"]["model"]["classes"]
    return metrics, events(history, record, chance=1.0 / classes)
