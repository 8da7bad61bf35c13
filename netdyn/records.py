"""A run's record: its ``history.csv`` (one row per snapshot) and ``run.json``, written the same way for runs trained
here (netdyn.train) and runs imported from checkpoints (netdyn.external). Formats: docs/formats.md.

Torch-free at import (``collect`` reads the column names); :func:`write_run` asks torch for its version only when
it writes.
"""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from netdyn.atomic import write_text

SNAPSHOT_METRICS = (
    "train_loss",
    "train_acc",
    "test_loss",
    "test_acc",
    "train_loss_bntrain",
    "train_acc_bntrain",
    "test_acc_bntrain",
    "weight_norm",
)
HISTORY_COLUMNS = ["step", "epoch", *SNAPSHOT_METRICS, "wall_time"]
BN_TRAIN_METRICS = {"train_loss_bntrain", "train_acc_bntrain", "test_acc_bntrain"}  # NaN without BatchNorm


def write_run(
    history_path: str | os.PathLike,
    run_json_path: str | os.PathLike,
    history: Sequence[Mapping[str, Any]],
    spec: Mapping[str, Any],
    *,
    started: float,
    n_train: int,
    device: str,
    status: str = "completed",
    diverged_at: int | None = None,
    resumed_from: int | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """Write ``history.csv`` and ``run.json`` (atomically) and return the record; ``extra`` adds fields (e.g.
    ``imported``)."""
    import torch

    write_text(history_path, pd.DataFrame(list(history), columns=HISTORY_COLUMNS).to_csv(index=False))
    record = {
        "run": spec["run"],
        "status": status,
        "diverged_at": diverged_at,
        "spec": dict(spec),
        "seed": spec["train"]["seed"],
        "resumed_from": resumed_from,
        "n_train": n_train,
        "device": device,
        "versions": {"python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda},
        "wall_time_s": time.time() - started,
        "final": history[-1] if history else None,
        **extra,
    }
    write_text(run_json_path, json.dumps(record, indent=2, default=float))
    return record
