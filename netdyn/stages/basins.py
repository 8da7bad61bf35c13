"""Stage ``basins``: input- and weight-space basin curves and sizes (methods.md §7, §8) on the training analysis
samples.

Rows of the ``basins`` table with ``space = input_tracked`` hold the accuracy at the fixed amplitudes followed over
training (Fig. 6(a)): ``tracked_input_amplitudes`` as given, and ``tracked_input_multiples`` times the run's input
basin at its last analysed step (``multiple`` says which; the final step is analysed first to measure it). A basin
whose threshold lies outside the amplitude grid has no value; its metric row says which bound the grid gives
(``bound`` lower: the basin is larger than ``bound_value``; upper: smaller), and its multiples are not tracked.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd
import torch

from netdyn import data as datasets
from netdyn.basins import amplitude_grid, basin_table, input_basin_curve
from netdyn.metrics import curve_table, metric_frame, metric_row
from netdyn.samples import analysis_samples
from netdyn.stages import Sources
from netdyn.stages.common import analysis_device, dtype_of, models

CURVE_COLUMNS = ["run", "step", "space", "amplitude", "multiple", "accuracy", "accuracy_std"]


def size_row(run: str, step: int, name: str, size: float, status: str, grid: Mapping[str, float]) -> dict:
    """The metric row of one basin size, with the grid's bound where the threshold lies outside the grid."""
    if status == "beyond_grid":
        bound = 10.0 ** grid["stop"]
        return metric_row(run, step, name, size, note=f"beyond_grid: > {bound:g}", bound="lower", bound_value=bound)
    if status == "below_grid":
        bound = 10.0 ** grid["start"]
        return metric_row(run, step, name, size, note=f"below_grid: < {bound:g}", bound="upper", bound_value=bound)
    return metric_row(run, step, name, size, note="" if status == "ok" else status)


def run(run: str, sources: Sources, steps: Sequence[int], settings: Mapping[str, Any], log=print) -> dict:
    data = datasets.load(sources.data, device=analysis_device(sources.train_spec))
    _, x, y = analysis_samples(data, sources.train_spec, settings["samples"])
    curves, rows = [], []
    multiples = list(settings.get("tracked_input_multiples") or [])
    tracked: list[tuple[float, float]] = [(a, math.nan) for a in settings["tracked_input_amplitudes"]]
    ordered = sorted(steps)[-1:] + sorted(steps)[:-1]  # the final step first: its basin scales the multiples
    for step, model in models(sources.snapshots, ordered, data.train_x.device, log):
        inputs = x.to(dtype_of(model))
        table, sizes = basin_table(
            model,
            inputs,
            y,
            input_amplitudes=amplitude_grid(settings["input_amplitudes"]),
            weight_amplitudes=amplitude_grid(settings["weight_amplitudes"]),
            repeats=settings["input_repeats"],
            draws=settings["weight_draws"],
            seed=settings["seed"],
            relative=settings["weight_noise"] == "relative",
            fraction=settings["basin_fraction"],
        )
        if multiples:
            reference, status = sizes["basin_input"]
            if status == "ok":
                tracked += [(m * reference, m) for m in multiples]
                log(f"step {step}: tracking input noise at {multiples} x the final input basin {reference:.3g}")
            else:
                log(f"step {step}: the final input basin is {status}; its multiples are not tracked")
            multiples = []
        if tracked:
            generator = torch.Generator().manual_seed(settings["seed"] + 1)
            amplitudes = [a for a, _ in tracked]
            mean, std = input_basin_curve(
                model, inputs, y, amplitudes, repeats=settings["input_repeats"], generator=generator
            )
            table += [
                {
                    "space": "input_tracked",
                    "amplitude": a,
                    "multiple": k,
                    "accuracy": float(m),
                    "accuracy_std": float(s),
                }
                for (a, k), m, s in zip(tracked, mean, std, strict=True)
            ]
        curves.append(pd.DataFrame(table).assign(run=run, step=step))
        for name, (size, status) in sizes.items():
            grid = settings["input_amplitudes" if name == "basin_input" else "weight_amplitudes"]
            rows.append(size_row(run, step, name, size, status, grid))
        log(f"step {step}: basins " + ", ".join(f"{k}={v[0]:.3g} ({v[1]})" for k, v in sizes.items()))
    table = curve_table(curves, CURVE_COLUMNS).sort_values("step", kind="stable", ignore_index=True)
    return {"basins": table, "metrics": metric_frame(rows).sort_values("step", kind="stable", ignore_index=True)}
