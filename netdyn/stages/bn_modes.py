"""Stage ``bn_modes``: ``test_acc_bnbatch``, the test accuracy in eval mode with the running statistics replaced by
those of the last training batch before the step (methods.md §11.2, the literal α = 0 reading).

The eval-mode (``test_acc``) and the primary train-mode reading (``test_acc_bntrain``) come from the training
history, which evaluates them at every snapshot on the whole test split.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from netdyn import data as datasets
from netdyn.evaluate import accuracy_bn_batch_stats, has_batchnorm
from netdyn.metrics import metric_frame, metric_row
from netdyn.samples import analysis_samples, training_indices
from netdyn.stages import Sources
from netdyn.stages.common import analysis_device, dtype_of, models
from netdyn.train import batch_indices


def run(run: str, sources: Sources, steps: Sequence[int], settings: Mapping[str, Any], log=print) -> dict:
    spec = sources.train_spec
    data = datasets.load(sources.data, device=analysis_device(sources.train_spec))
    _, x_test, y_test = analysis_samples(data, spec, settings["test_samples"], split="test")
    train_rows = torch.as_tensor(training_indices(data.train_y.cpu().numpy(), spec), device=data.train_x.device)
    batch_size, seed = int(spec["batch_size"]), int(spec["seed"])
    rows = []
    for step, model in models(sources.snapshots, steps, data.train_x.device, log):
        if not has_batchnorm(model):
            continue
        last_batch = batch_indices(max(step - 1, 0), len(train_rows), batch_size, seed).to(train_rows.device)
        dtype = dtype_of(model)
        accuracy = accuracy_bn_batch_stats(
            model, data.train_x[train_rows[last_batch]].to(dtype), x_test.to(dtype), y_test
        )
        rows.append(metric_row(run, step, "test_acc_bnbatch", accuracy))
        log(f"step {step}: test accuracy with last-batch BatchNorm statistics {accuracy:.4f}")
    return {"metrics": metric_frame(rows)}
