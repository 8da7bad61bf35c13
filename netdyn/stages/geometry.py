"""Stage ``geometry``: class geometry of every layer (methods.md §9) on the training analysis samples.

Tables: ``geometry``, the per-sample distances of the first ``geometry_first`` samples of ``geometry_digit`` (the
thin lines of Fig. 3(c)), and the metrics ``center_distance``, ``center_similarity`` and ``digit_center_distance``
per layer l = 0..L-1 (0 = the input).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from netdyn import data as datasets
from netdyn.geometry import layer_geometry
from netdyn.metrics import curve_table, metric_frame, metric_row
from netdyn.stages import Sources
from netdyn.stages.common import training_fields

CURVE_COLUMNS = ["run", "step", "layer", "sample_index", "distance"]


def run(run: str, sources: Sources, steps: Sequence[int], settings: Mapping[str, Any], log=print) -> dict:
    data = datasets.load(sources.data)
    classes = int(max(data.train_y.max(), data.test_y.max())) + 1
    curves, rows = [], []
    fields_by_step = training_fields(sources, steps, settings["samples"], log)
    for step, _, dump in fields_by_step:
        inputs = data.train_x[torch.as_tensor(dump["indices"])]
        result = layer_geometry(
            [inputs, *dump["x"]],
            dump["labels"],
            digit=settings["geometry_digit"],
            n_first=settings["geometry_first"],
            n_classes=classes,
            indices=dump["indices"],
        )
        curves.append(result.digit.assign(run=run, step=step))
        for record in result.summary.to_dict("records"):
            layer = int(record["layer"])
            rows.append(metric_row(run, step, "center_distance", record["center_distance"], layer))
            rows.append(metric_row(run, step, "center_similarity", record["center_similarity"], layer))
            rows.append(metric_row(run, step, "digit_center_distance", record["digit_distance_mean"], layer))
        log(f"step {step}: geometry of {len(result.summary)} layers")
    return {"geometry": curve_table(curves, CURVE_COLUMNS), "metrics": metric_frame(rows)}
