"""Stage ``projection``: 2-D SVD-bottleneck coordinates (methods.md §10) of the first ``projection_per_digit``
samples of each of ``projection_digits``, at the run's checkpoints (``projection_steps: checkpoints``, the steps the
figures draw) or at every analysed step (``analysed``).

Training samples come from the run's own training set, test samples from the test split. Models with BatchNorm are
projected twice: ``bn_mode`` eval (running statistics) and train (each shuffled mini-batch of the whole split
normalized by its own statistics, methods.md §11.2), the two panels of Fig. 7.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from netdyn import data as datasets
from netdyn.evaluate import bn_train_mode_forward, eval_mode, has_batchnorm
from netdyn.events import checkpoint_steps
from netdyn.layers import forward_layers, is_general
from netdyn.layerview import head as general_head
from netdyn.metrics import curve_table
from netdyn.projection import bottleneck, output_weight, project
from netdyn.samples import training_indices
from netdyn.stages import Sources
from netdyn.stages.common import analysis_device, dtype_of, models

CURVE_COLUMNS = ["run", "step", "split", "bn_mode", "index", "label", "h1", "h2"]


def projection_steps(
    history_path: str | os.PathLike, run_json_path: str | os.PathLike, steps: Sequence[int], which: str
) -> list[int]:
    """The steps to project: all analysed ``steps`` (``which`` = "analysed"), or only those of them that the figures
    draw (``which`` = "checkpoints"): the before/after checkpoints of the run's grokking readings, read off its
    history with the same detector and chance level as ``collect`` (netdyn.events, the run record's classes), and
    the final step."""
    if which == "analysed":
        return sorted(steps)
    classes = json.loads(Path(run_json_path).read_text())["spec"]["model"]["classes"]
    wanted = set(checkpoint_steps(pd.read_csv(history_path), classes))
    return sorted(set(steps) & wanted)


def run(run: str, sources: Sources, steps: Sequence[int], settings: Mapping[str, Any], log=print) -> dict:
    steps = projection_steps(sources.history, sources.run_json, steps, settings["projection_steps"])
    digits, per_digit = settings["projection_digits"], settings["projection_per_digit"]
    spec = sources.train_spec
    data = datasets.load(sources.data, device=analysis_device(sources.train_spec))
    train_rows = training_indices(data.train_y.cpu().numpy(), spec)
    splits = {
        "train": (data.train_x[train_rows], data.train_y[train_rows], train_rows),
        "test": (data.test_x, data.test_y, np.arange(len(data.test_y))),
    }
    batch_size, seed = int(spec["batch_size"]), int(spec["seed"])
    frames = []
    for step, model in models(sources.snapshots, steps, data.train_x.device, log):
        general = is_general(model)
        head, why = general_head(model) if general else (None, "")
        if general and head is None:
            log(f"step {step}: no projection: {why}")
            continue
        weight, _, _ = bottleneck(head.weight if general else output_weight(model))
        dtype = dtype_of(model)
        # Train-mode BatchNorm projections need the MLP's batched forward; a general module is projected in eval mode.
        modes = ["eval", "train"] if has_batchnorm(model) and not general else ["eval"]
        for split, (x, y, rows) in splits.items():
            labels = y.cpu().numpy()
            chosen = np.concatenate([np.flatnonzero(labels == d)[:per_digit] for d in digits])
            chosen.sort()
            for mode in modes:
                if mode == "eval":
                    with eval_mode(model):
                        _, outputs, _ = forward_layers(model, x[chosen].to(dtype))
                    last = outputs[-1] if outputs else x[chosen]
                else:
                    last = bn_train_mode_forward(model, x.to(dtype), batch_size, seed)[0][chosen]
                coordinates = project(last, weight).cpu().numpy()
                frames.append(
                    pd.DataFrame(
                        {
                            "run": run,
                            "step": step,
                            "split": split,
                            "bn_mode": mode,
                            "index": rows[chosen],
                            "label": labels[chosen],
                            "h1": coordinates[:, 0],
                            "h2": coordinates[:, 1],
                        }
                    )
                )
        log(f"step {step}: projected digits {list(digits)}")
    return {"projection": curve_table(frames, CURVE_COLUMNS)}
