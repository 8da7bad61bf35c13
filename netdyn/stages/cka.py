"""Stage ``cka``: linear CKA between layer representations (docs/methods.md §25), on the training analysis fields
(the layer outputs x = f(h); ``cka_debiased`` chooses the estimator).

Table ``cka``: at the last analysed step the layer-by-layer matrix (``kind`` = ``layers``: every pair of the input
l = 0 and the hidden layers), and at every analysed step each hidden layer against its own state at the last
analysed step (``kind`` = ``to_final``). Metric ``cka_to_final`` per hidden layer and step.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd
import torch

from netdyn import data as datasets
from netdyn.cka import cka_matrix, linear_cka
from netdyn.metrics import metric_frame, metric_row
from netdyn.stages import Sources
from netdyn.stages.common import training_fields

COLUMNS = ["run", "step", "kind", "layer_a", "layer_b", "cka", "debiased"]


def run(run: str, sources: Sources, steps: Sequence[int], settings: Mapping[str, Any], log=print) -> dict:
    debiased = bool(settings["cka_debiased"])
    final_step, final, indices = None, None, None
    for step in sorted(steps, reverse=True):  # the last analysed step with weights
        for found, _, fields in training_fields(sources, [step], settings["samples"], log):
            final_step, final, indices = found, [torch.as_tensor(x).cpu() for x in fields["x"]], fields["indices"]
        if final is not None:
            break
    table, rows = [], []
    if final is None:
        return {"cka": pd.DataFrame(columns=COLUMNS), "metrics": metric_frame(rows)}
    inputs = datasets.load(sources.data).train_x[torch.as_tensor(indices)]
    matrix = cka_matrix([inputs, *final], debiased)
    for a in range(len(matrix)):
        for b in range(len(matrix)):
            table.append({"run": run, "step": final_step, "kind": "layers", "layer_a": a, "layer_b": b,
                          "cka": float(matrix[a, b]), "debiased": debiased})  # fmt: skip
    for step, _, fields in training_fields(sources, [s for s in steps if s <= final_step], settings["samples"], log):
        for layer, (now, last) in enumerate(zip(fields["x"], final, strict=True), start=1):
            value = linear_cka(torch.as_tensor(now).cpu(), last, debiased)
            table.append({"run": run, "step": step, "kind": "to_final", "layer_a": layer, "layer_b": layer,
                          "cka": value, "debiased": debiased})  # fmt: skip
            rows.append(metric_row(run, step, "cka_to_final", value, layer))
    log(f"CKA: {len(matrix)} x {len(matrix)} layer matrix at step {final_step}, every analysed step against it")
    return {"cka": pd.DataFrame(table, columns=COLUMNS), "metrics": metric_frame(rows)}
