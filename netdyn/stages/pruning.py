"""Stage ``pruning``: LP and L-map pruning accuracy (methods.md §4, §5) for every start layer, as metrics with
layer = l.

The LP is fitted on the run's training split (methods.md §22: a class-stratified subset of ``lp_train_samples`` where
that is set, for huge sets) and scored on the test analysis samples; ``lp_train_acc`` is its accuracy on the fitting
set. Features come from an eval-mode forward of each snapshot. A conv layer's features are its channels' spatial
means, or its whole flattened output (``lp_features``, docs/methods.md §27; a layer too large for an LP then gets NaN
with a note).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from netdyn import data as datasets
from netdyn.activations import layer_outputs
from netdyn.metrics import metric_frame, metric_row
from netdyn.pruning import pruning_table
from netdyn.samples import analysis_samples
from netdyn.stages import Sources
from netdyn.stages.common import analysis_device, dtype_of, models

PRUNING_METRICS = {
    "lp_test_acc": "lp_acc",
    "lp_train_acc": "lp_train_acc",
    "lmap_acc": "lmap_acc",
    "lmap_weights_only_acc": "lmap_weights_acc",
}


def run(run: str, sources: Sources, steps: Sequence[int], settings: Mapping[str, Any], log=print) -> dict:
    data = datasets.load(sources.data, device=analysis_device(sources.train_spec))
    _, x_fit, y_fit = analysis_samples(data, sources.train_spec, settings["lp_train_samples"])
    _, x_test, y_test = analysis_samples(data, sources.train_spec, settings["test_samples"], split="test")
    rows = []
    conv_outputs = settings["lp_features"]
    for step, model in models(sources.snapshots, steps, data.train_x.device, log):
        train_xs, train_logits = layer_outputs(model, x_fit.to(dtype_of(model)), conv_outputs=conv_outputs)
        test_xs, _ = layer_outputs(model, x_test.to(dtype_of(model)), conv_outputs=conv_outputs)
        table = pruning_table(model, train_xs, train_logits, test_xs, y_test, y_fit)
        del train_xs, test_xs
        for record in table:
            for key, name in PRUNING_METRICS.items():
                note = record.get("lp_note", "") if key.startswith("lp_") else ""
                rows.append(metric_row(run, step, name, record[key], int(record["start_layer"]), note=note))
        log(f"step {step}: LP fitted on {len(y_fit)} training samples; LP and L-map pruning from {len(table)} layers")
    return {"metrics": metric_frame(rows)}
