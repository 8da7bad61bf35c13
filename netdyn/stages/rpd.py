"""Stage ``rpd``: RPD density curves and gradients (methods.md §6) of every hidden layer at every analysed step, and
each neuron's mode (methods.md §19): tables ``rpd``, ``neurons`` and the metrics (with ``opm_fraction``).

The fields come from the run's dumps or, without them, from the snapshots on the training analysis samples: the
same numbers either way (netdyn.stages.common.training_fields)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch

from netdyn.metrics import curve_table, metric_frame, metric_row
from netdyn.modes import classify
from netdyn.rpd import rpd_for_layers
from netdyn.stages import Sources
from netdyn.stages.common import analysis_device, training_fields

RPD_METRICS = {
    "G": "rpd_gradient",
    "G_half": "rpd_gradient_half",
    "G_log": "rpd_gradient_log",
    "contrast": "rpd_contrast",
}
CURVE_COLUMNS = ["run", "step", "layer", "bin_center", "density"]
NEURON_COLUMNS = ["run", "step", "layer", "neuron", "score", "z", "opm"]


def run(run: str, sources: Sources, steps: Sequence[int], settings: Mapping[str, Any], log=print) -> dict:
    curves, neurons, rows = [], [], []
    device = analysis_device(sources.train_spec)
    fields_by_step = training_fields(sources, steps, settings["samples"], log)
    for step, model, dump in fields_by_step:
        fields = [torch.as_tensor(h, device=device) for h in dump["h"]]
        fractions = []
        labels = torch.as_tensor(dump["labels"], device=device)
        for result in rpd_for_layers(model, fields, labels, settings["rpd_bins"]):
            layer = result["layer"]
            curves.append(
                pd.DataFrame(
                    {
                        "run": run,
                        "step": step,
                        "layer": layer,
                        "bin_center": result["bin_centers"],
                        "density": result["density"],
                    }
                )
            )
            modes = classify(result["neurons"], alpha=settings["opm_alpha"], min_score=settings["opm_min_score"])
            neurons.append(
                pd.DataFrame(
                    {
                        "run": run,
                        "step": step,
                        "layer": layer,
                        "neuron": np.arange(len(modes["opm"])),
                        "score": modes["score"],
                        "z": modes["z"],
                        "opm": modes["opm"].astype(int),
                    }
                )
            )
            rows += [metric_row(run, step, name, result[key], layer) for key, name in RPD_METRICS.items()]
            rows.append(metric_row(run, step, "opm_fraction", modes["opm_fraction"], layer))
            fractions.append(f"{modes['opm_fraction']:.2f}")
        log(f"step {step}: RPD of {len(fields)} hidden layers; OPM fraction by layer {', '.join(fractions)}")
    return {
        "rpd": curve_table(curves, CURVE_COLUMNS),
        "neurons": curve_table(neurons, NEURON_COLUMNS),
        "metrics": metric_frame(rows),
    }
