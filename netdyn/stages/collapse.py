"""Stage ``collapse``: neural collapse of every hidden layer at every analysed snapshot (docs/methods.md §24), on
the training analysis fields (the layer outputs x = f(h), from the run's dumps where it has them).

Metrics per hidden layer l = 1..D: ``nc1``, ``nc2_norm``, ``nc2_angle``, ``nc2_etf``; at the last hidden layer
also ``nc3`` (against the output layer's weights) and ``nc4`` (against the net's predictions on the same samples).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from netdyn.collapse import nc1, nc2, nc3, nc4
from netdyn.layers import blocks, is_general
from netdyn.layerview import head as general_head
from netdyn.metrics import metric_frame, metric_row
from netdyn.stages import Sources
from netdyn.stages.common import training_fields

NC_HEAD = ("nc3", "nc4")  # they need the output layer's weights and predictions from the last hidden layer


def output_layer(model) -> tuple[Any, str]:
    """The Linear that makes the logits from the last hidden layer's outputs, or None and why (any module)."""
    return general_head(model) if is_general(model) else (blocks(model)[-1].linear, "")


def run(run: str, sources: Sources, steps: Sequence[int], settings: Mapping[str, Any], log=print) -> dict:
    rows = []
    for step, model, fields in training_fields(sources, steps, settings["samples"], log):
        labels = torch.as_tensor(fields["labels"])
        outputs = [torch.as_tensor(x).double().cpu() for x in fields["x"]]
        for layer, features in enumerate(outputs, start=1):
            rows.append(metric_row(run, step, "nc1", nc1(features, labels), layer))
            for name, value in nc2(features, labels).items():
                rows.append(metric_row(run, step, name, value, layer))
        last = len(outputs)
        head, why = output_layer(model)
        if head is None:
            rows += [metric_row(run, step, name, float("nan"), last, note=f"not applicable: {why}") for name in NC_HEAD]
            log(f"step {step}: NC3 and NC4 not measured: {why}")
            continue
        classifier = head.weight.detach().double().cpu()
        logits = outputs[-1] @ classifier.T
        if head.bias is not None:  # a user's output layer may have none
            logits = logits + head.bias.detach().double().cpu()
        rows.append(metric_row(run, step, "nc3", nc3(outputs[-1], labels, classifier), last))
        rows.append(metric_row(run, step, "nc4", nc4(outputs[-1], labels, logits.argmax(dim=1)), last))
        log(f"step {step}: neural collapse of {last} layers, NC1 at the last {rows[-6]['value']:.4g}")
    return {"metrics": metric_frame(rows)}
