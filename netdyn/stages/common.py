"""What every stage does the same way: the analysis device, the run's analysed models, and the training analysis
fields (read from the run's activation dumps where it has them, else computed from the snapshots)."""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from netdyn import activations, snapshots
from netdyn import data as datasets
from netdyn.devices import resolve_device
from netdyn.samples import analysis_samples
from netdyn.stages import Sources


def analysis_device(train_spec: Mapping[str, Any]) -> torch.device:
    """The CPU for a run trained on the CPU on purpose (``train.device: cpu``); otherwise CUDA when torch can use it,
    else the CPU, and an error when the job was given a GPU torch cannot use (netdyn.devices)."""
    requested = "cpu" if train_spec.get("device") == "cpu" else "auto"
    with warnings.catch_warnings():  # the CPU is the analyses' ordinary device where there is no GPU
        warnings.simplefilter("ignore")
        return resolve_device(requested, key="analysis device")


def models(
    snapshot_dir: str | os.PathLike, steps: Sequence[int], device: torch.device, log=print
) -> Iterator[tuple[int, nn.Sequential]]:
    """``(step, model)`` for every analysed step whose snapshot holds weights, on ``device``."""
    return snapshots.iter_models(snapshot_dir, steps, device, log)


def dtype_of(model: nn.Module) -> torch.dtype:
    return next(model.parameters()).dtype


def training_fields(
    sources: Sources, steps: Sequence[int], samples: int | None, log=print
) -> Iterator[tuple[int, nn.Sequential, dict]]:
    """``(step, model, fields)`` of the training analysis samples at every analysed step that has weights: read from
    the run's activation dump where it has one (``sources.activations``), else computed by an eval-mode forward of
    the snapshot on the same samples; ``fields`` holds what the dump holds (docs/formats.md: ``indices``,
    ``labels``, ``h``, ``x``)."""
    dump_dir, device = sources.activations, analysis_device(sources.train_spec)
    if dump_dir is None:
        data = datasets.load(sources.data, device=device)
        rows, x, y = analysis_samples(data, sources.train_spec, samples)
    for step, model in models(sources.snapshots, steps, device, log):
        if dump_dir is not None:
            yield step, model, activations.read(Path(dump_dir) / activations.dump_name(step), "train")
            continue
        computed = activations.compute(model, x.to(dtype_of(model)))
        depth = sum(name.startswith("h") for name in computed)
        yield (
            step,
            model,
            {
                "indices": rows,
                "labels": y.cpu().numpy(),
                "h": [computed[f"h{layer:02d}"] for layer in range(1, depth + 1)],
                "x": [computed[f"x{layer:02d}"] for layer in range(1, depth + 1)],
            },
        )
